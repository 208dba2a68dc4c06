using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.ML.LinearAttention.Samples.Commands;

// ML.LinearAttention samples: `demo` (default) runs offline on built-in data; `bench kernels` times every attention
// mechanism (GPU machine). `--help` lists the commands.
var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = Array.Empty<string>() });
builder.Logging.ClearProviders();
builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; });
builder.Services.AddSingleton(_ => new CommandRunner(Console.Out, Console.Error));
using var host = builder.Build();
var runner = host.Services.GetRequiredService<CommandRunner>();
var stopping = host.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping;
using var interrupt = CommandRunner.StopsOnCancellation(args) ? new InterruptSignal(stopping, Console.Error) : null;
return await runner.RunAsync(args, interrupt?.Token ?? stopping);
