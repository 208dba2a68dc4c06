using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.ML.LinearAttention.Samples.Commands;

// ML.LinearAttention samples: `demo` (default) runs offline on built-in data; `bench kernels` times every attention
// mechanism (GPU machine). `--help` lists the commands.
var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = Array.Empty<string>() });
builder.Logging.ClearProviders();
builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; });
builder.Services.AddSingleton<CommandRunner>();
using var host = builder.Build();
var runner = host.Services.GetRequiredService<CommandRunner>();
return await runner.RunAsync(args, CancellationTokenSource.CreateLinkedTokenSource(host.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping).Token);
