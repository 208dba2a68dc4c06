using System.IO.Compression;
using System.Text.RegularExpressions;
using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.SampleData;
using Microsoft.ML.LinearAttention.Samples.Commands;
using Xunit;
using Cli = Microsoft.ML.LinearAttention.Samples.Commands.CommandLine;

namespace Microsoft.ML.LinearAttention.Tests.Samples;

/// <summary>The samples CLI's help, input files, options and error output (issue #22), without training.</summary>
public sealed class CliInputTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("la-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string P(string name) => Path.Combine(_dir, name);

    [Fact]
    public void HelpStartsEachCommandOnItsOwnLine()
    {
        foreach (var command in new[] { "train", "convert", "evaluate", "predict", "serve", "export-backbone" })
            Assert.Matches(new Regex($"(?m)^  {Regex.Escape(command)} "), CommandRunner.Usage);
        // No usage block runs on at the end of the previous block's last line.
        Assert.DoesNotMatch(new Regex(@"\S  (convert|evaluate|predict|serve|export-backbone) --"), CommandRunner.Usage);
    }

    [Fact]
    public void GzipCompressedFilesAreReadAndBinaryFilesRefused()
    {
        var tickets = SupportTickets.Generate(30, seed: 2);
        var plain = TicketFiles.Write(P("tickets.tsv"), tickets, '\t');
        Gzip(plain, P("tickets.tsv.gz"));
        Gzip(TicketFiles.Write(P("tickets.csv"), tickets), P("tickets.csv.gz"));
        var ml = new MLContext(1);
        foreach (var (file, separator) in new[] { ("tickets.tsv.gz", '\t'), ("tickets.csv.gz", ',') })
        {
            var data = TabularData.Open(P(file));
            Assert.True(data.Compressed);
            Assert.Equal(separator, data.Separator);
            Assert.Equal(TabularData.Open(plain).Header, data.Header);
            Assert.Equal("tickets", data.Stem);
            var titles = data.Load(ml, new[] { ("Title", DataKind.String) }).GetColumn<string>("Title").ToList();
            Assert.Equal(tickets.Select(t => t.Title), titles);
        }

        File.WriteAllBytes(P("tickets.zip.csv"), new byte[] { 0x50, 0x4B, 0x03, 0x04, 0x14, 0x00, 0x00, 0x00, 0x08, 0x00, (byte)'\n' });
        var e = Assert.Throws<ArgumentException>(() => TabularData.Open(P("tickets.zip.csv")));
        Assert.Contains("is not a text file", e.Message);
        Assert.Contains(".csv.gz", e.Message);
    }

    private static void Gzip(string source, string target)
    {
        using var input = File.OpenRead(source);
        using var output = new GZipStream(File.Create(target), CompressionLevel.Fastest);
        input.CopyTo(output);
    }

    [Fact]
    public void ConvertAcceptsTheTrainOptionsItsHelpPromises()
    {
        var cl = new Cli("convert", new[]
        {
            "--max-length", "256", "--dropout", "0.2", "--checkpoint-dir", P("ck"), "--checkpoint-every", "7", "--epochs", "1", "--label", "Priority",
        });
        var o = TrainCommand.ConvertOptions(cl, classify: true, seed: 1);
        cl.RejectUnknown(); // every option above was read
        Assert.Equal(256, o.MaxSequenceLength);
        Assert.Equal(0.2, o.Dropout);
        Assert.Equal(P("ck"), o.CheckpointDirectory);
        Assert.Equal(7, o.CheckpointEverySteps);
        // Left out, the length stays the library default, which the estimator lowers to the checkpoint's positions.
        Assert.Equal(new TextClassificationOptions().MaxSequenceLength, TrainCommand.ConvertOptions(new Cli("convert", Array.Empty<string>()), true, 1).MaxSequenceLength);
        Assert.Contains("--max-length N", TrainCommand.ConvertUsage);
    }

    [Fact]
    public void MaxLengthDefaultIsTheLibrarysAndTheHelpSaysSo()
    {
        int library = new TextClassificationOptions().MaxSequenceLength;
        Assert.Equal(library, TrainCommand.Options(new Cli("train", Array.Empty<string>()), classify: true, seed: 1).MaxSequenceLength);
        Assert.Equal(library, TrainCommand.Options(new Cli("train", Array.Empty<string>()), classify: false, seed: 1).MaxSequenceLength);
        Assert.Matches(new Regex($@"--max-length N .*default {library}, the library's"), TrainCommand.Usage);
    }

    [Fact]
    public async Task ErrorsArePlainLinesWithExitCodeTwo()
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var runner = new CommandRunner(output, error);
        Assert.Equal(2, await runner.RunAsync(new[] { "train", "--data", P("missing.csv"), "--text", "Title", "--label", "Priority" }, default));
        Assert.Equal($"error: The data file '{P("missing.csv")}' does not exist.", error.ToString().TrimEnd());

        error.GetStringBuilder().Clear();
        var data = TicketFiles.Write(P("t.csv"), SupportTickets.Generate(8, seed: 1));
        Assert.Equal(2, await runner.RunAsync(new[] { "train", "--data", data, "--text", "Title", "--label", "Priority", "--lr", "0", "--progress", "none" }, default));
        var line = Assert.Single(error.ToString().TrimEnd().Split('\n')); // a multi-line library message is one line too
        Assert.StartsWith("error: LearningRate must be positive", line);
        Assert.DoesNotContain("fail:", line);
        Assert.DoesNotContain("CommandRunner", line);
    }

    [Fact]
    public void FeaturesRefuseATextColumnNamingIt()
    {
        var rows = Enumerable.Range(1, 12).Select(i => $"title {i},body of ticket {i},{i % 3},{(i == 3 ? "n/a" : (i * 1.5).ToString(System.Globalization.CultureInfo.InvariantCulture))},{(i % 2 == 0 ? "High" : "Low")}");
        var data = P("t.csv");
        File.WriteAllLines(data, rows.Prepend("Title,Body,Tier,Users,Priority"));
        string[] Args(string features) => new[] { "--data", data, "--text", "Title", "--features", features, "--label", "Priority", "--progress", "none", "--model", P("m.zip") };

        var e = Assert.Throws<ArgumentException>(() => TrainCommand.Run(Args("Tier,Body"), TextWriter.Null, default));
        Assert.Contains("Column 'Body'", e.Message);
        Assert.Contains("holds text, not numbers", e.Message);
        Assert.Contains("row 1: 'body of ticket 1'", e.Message);
        Assert.Contains("--text", e.Message); // the fix

        // A numeric column with a stray word: named with its row, and what to do instead.
        var mixed = Assert.Throws<ArgumentException>(() => TrainCommand.Run(Args("Tier,Users"), TextWriter.Null, default));
        Assert.Contains("Column 'Users'", mixed.Message);
        Assert.Contains("row 3: 'n/a'", mixed.Message);
        Assert.Contains("leave a missing value empty", mixed.Message);
        Assert.False(File.Exists(P("m.zip")));
    }

    [Fact]
    public void ALabelNamedLikeAModelOutputIsRefused()
    {
        var data = P("s.csv");
        File.WriteAllLines(data, new[] { "Title,Score", "a,High", "b,Low" });
        var e = Assert.Throws<ArgumentException>(() => TrainCommand.Run(new[] { "--data", data, "--text", "Title", "--label", "Score", "--progress", "none" }, TextWriter.Null, default));
        Assert.Contains("The label column is named 'Score', a column the model writes itself; rename it", e.Message);
    }
}
