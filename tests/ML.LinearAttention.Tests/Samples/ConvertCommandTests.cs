using Microsoft.ML.LinearAttention.Samples.Commands;
using Microsoft.ML.LinearAttention.SampleData;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Samples;

/// <summary>`convert`: MiniLM (softmax) converted to Hedgehog linear attention and fine-tuned from a user's CSV.</summary>
public sealed class ConvertCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("la-convert-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void ConvertTrainsAConvertedPretrainedEncoderAndSavesALoadableModel()
    {
        var train = TicketFiles.Write(Path.Combine(_dir, "train.csv"), SupportTickets.Generate(48, seed: 3));
        var model = Path.Combine(_dir, "converted.zip");
        var log = new StringWriter();
        Assert.Equal(0, TrainCommand.RunConvert(new[]
        {
            "--data", train, "--text", "Title,Body", "--label", "Priority", "--model", model, "--epochs", "1", "--batch", "16",
            "--transfer-steps", "2", "--progress", "none", "--verbose", "--max-length", "64", "--dropout", "0.05",
        }, log, default));
        Assert.True(File.Exists(model), log.ToString());
        Assert.Contains("Attention transfer", log.ToString());
        Assert.Contains("MaxSequenceLength 64", log.ToString()); // train's --max-length, promised by convert's help, reaches the estimator

        var evaluate = new StringWriter();
        Assert.Equal(0, EvaluateCommand.Run(new[] { "--data", train, "--model", model }, evaluate));
    }

    [Fact]
    public void ConvertRejectsOptionsThatTheCheckpointFixes()
    {
        var train = TicketFiles.Write(Path.Combine(_dir, "train.csv"), SupportTickets.Generate(8, seed: 3));
        var ex = Assert.ThrowsAny<ArgumentException>(() => TrainCommand.RunConvert(new[]
        {
            "--data", train, "--text", "Title", "--label", "Priority", "--dim", "64", "--progress", "none",
        }, TextWriter.Null, default));
        Assert.Contains("--dim 64 does not apply to 'convert': the pretrained checkpoint fixes the encoder's sizes", ex.Message);
    }
}
