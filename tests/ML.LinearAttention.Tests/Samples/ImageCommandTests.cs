using System.Text.RegularExpressions;
using Microsoft.ML.LinearAttention.Samples.Commands;
using Microsoft.ML.LinearAttention.Samples.Reporting;
using Microsoft.ML.LinearAttention.Tests.Text;
using Microsoft.ML.LinearAttention.Tests.Vision;
using Xunit;
using Xunit.Abstractions;

namespace Microsoft.ML.LinearAttention.Tests.Samples;

/// <summary>`train`, `evaluate` and `predict` on images (issue #22): a folder per class or a CSV of paths, and clear input errors.</summary>
public sealed class ImageCommandTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("la-images-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string P(string name) => Path.Combine(_dir, name);

    private static readonly string[] Tiny = { "--image-size", "32", "--patch", "8", "--dim", "16", "--layers", "1", "--heads", "2", "--epochs", "2", "--batch", "4", "--progress", "none" };

    /// <summary>Four real photos of each of three classes, copied into DIR/class/ (as a user's folder would be).</summary>
    private string Flowers(string dir)
    {
        foreach (var g in ImageData.FlowerIndex().GroupBy(r => r.Flower).Take(3))
            foreach (var r in g.Take(4))
            {
                var target = Path.Combine(dir, g.Key, Path.GetFileName(r.Path));
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                File.Copy(Path.Combine(ImageData.FlowersFolder, r.Path), target);
            }
        return dir;
    }

    private string Run(Func<TextWriter, int> command)
    {
        var log = new StringWriter();
        Assert.Equal(0, command(log));
        output.WriteLine(log.ToString());
        return log.ToString();
    }

    [SharedDataFact(ImageData.Flowers)]
    public void TrainEvaluateAndPredictImagesFromAFolderAndFromACsv()
    {
        var folder = Flowers(P("photos"));
        var classes = Directory.GetDirectories(folder).Select(Path.GetFileName).Order().ToArray();

        // A folder per class.
        var args = new[] { "--images", folder, "--model", P("m.zip"), "--validation-fraction", "0.25" }.Concat(Tiny).ToList();
        args[args.IndexOf("--progress") + 1] = "lines";
        var trained = Run(log => TrainCommand.Run(args, log, default));
        Assert.Matches(new Regex(@"step 6/6 loss \S+ .* img/s ETA"), trained); // throughput in images, not tokens
        Assert.Contains($"12 image(s), 3 classes ({string.Join(", ", classes)})", trained);
        var card = ModelCard.FromJson(File.ReadAllText(P("m.card.json")));
        Assert.Equal("Image classification", card.Task);
        Assert.Equal(classes, card.Data.Classes);
        foreach (var f in new[] { "m.zip", "m.curves.png", "m.confusion.png", "m.card.md" }) Assert.True(File.Exists(P(f)), f);

        Run(log => PredictCommand.Run(new[] { "--model", P("m.zip"), "--images", folder, "--out", P("p.csv") }, log));
        var lines = File.ReadAllLines(P("p.csv"));
        Assert.Equal("ImagePath,Predicted,Probability", lines[0]);
        Assert.Equal(12, lines.Length - 1);
        Assert.All(lines.Skip(1), l => Assert.Contains(l.Split(',')[1], classes));
        Assert.StartsWith(Path.Combine(classes[0], ""), lines[1]); // paths as under the folder

        var evaluated = Run(log => EvaluateCommand.Run(new[] { "--model", P("m.zip"), "--images", folder, "--confusion", P("c.png") }, log));
        Assert.Matches(new Regex(@"\| MicroAccuracy \| [01]\.\d{4} \|"), evaluated);
        Assert.True(File.Exists(P("c.png")));

        // A CSV naming the images, relative to its own folder; predict and evaluate take the columns from the card.
        var rows = Directory.GetFiles(folder, "*", SearchOption.AllDirectories).Order()
            .Select(f => $"{Path.GetRelativePath(_dir, f)},{Path.GetFileName(Path.GetDirectoryName(f))}");
        File.WriteAllLines(P("index.csv"), rows.Prepend("file,flower"));
        Run(log => TrainCommand.Run(new[] { "--data", P("index.csv"), "--image", "file", "--label", "flower", "--model", P("c.zip") }.Concat(Tiny).ToList(), log, default));
        Assert.Equal("file", ModelCard.FromJson(File.ReadAllText(P("c.card.json"))).Data.ImageColumn);
        Run(log => PredictCommand.Run(new[] { "--model", P("c.zip"), "--data", P("index.csv") }, log));
        Assert.Equal("file,Predicted,Probability", File.ReadLines(P("index.predictions.csv")).First());
        Assert.Equal(13, File.ReadAllLines(P("index.predictions.csv")).Length);
        Assert.Contains("MicroAccuracy", Run(log => EvaluateCommand.Run(new[] { "--model", P("c.zip"), "--data", P("index.csv") }, log)));

        // A JPEG that starts right but is damaged: the error names the file, not a row number.
        var damaged = Path.Combine(folder, classes[1], "damaged.jpg");
        File.WriteAllBytes(damaged, new byte[] { 0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3, 4, 5, 6, 7, 8 });
        var e = Assert.Throws<ArgumentException>(() => TrainCommand.Run(new[] { "--images", folder, "--model", P("d.zip") }.Concat(Tiny).ToList(), TextWriter.Null, default));
        Assert.Contains(damaged, e.Message);
        Assert.Contains("Replace or remove", e.Message);
    }

    [Fact]
    public void ImageInputErrorsNameTheProblemAndTheFix()
    {
        string Error(params string[] args) => Assert.Throws<ArgumentException>(() => TrainCommand.Run(args.Concat(Tiny).ToList(), TextWriter.Null, default)).Message;
        void Write(string name, string content)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(P(name))!);
            File.WriteAllText(P(name), content);
        }

        Directory.CreateDirectory(P("empty"));
        Assert.Contains("is empty: it needs a subfolder per class", Error("--images", P("empty")));

        Write("loose/a.png", "x");
        Assert.Contains("holds 1 image(s) but no class folders: put each class's images in a subfolder", Error("--images", P("loose")));

        Write("one/cat/a.png", "x");
        Assert.Contains("has one class folder ('cat'); a classifier needs at least two", Error("--images", P("one")));

        Write("hollow/cat/a.png", "x");
        Directory.CreateDirectory(P("hollow/dog"));
        Assert.Contains($"The class folder '{P("hollow/dog")}' holds no image", Error("--images", P("hollow")));

        // Files named like images that are not: each is named, with the fix.
        Write("bad/cat/a.png", "this is text");
        Write("bad/dog/b.jpg", "");
        var bad = Error("--images", P("bad"));
        Assert.Contains($"'{P("bad/cat/a.png")}' (not a PNG, JPEG, BMP, GIF or WEBP file)", bad);
        Assert.Contains($"'{P("bad/dog/b.jpg")}' (empty)", bad);
        Assert.Contains("Replace them with PNG, JPEG, BMP, GIF or WEBP images, or remove them", bad);

        // A path column naming files that do not exist.
        Write("list.csv", "path,label\nimgs/a.png,cat\nimgs/b.png,dog\n");
        var missing = Error("--data", P("list.csv"), "--image", "path", "--label", "label");
        Assert.Contains($"2 of 2 image path(s) in column 'path' of '{P("list.csv")}' name no file: row 1: 'imgs/a.png' (looked for {P("imgs/a.png")})", missing);
        Assert.Contains($"Relative paths are read from {_dir}; give --image-root DIR", missing);
        Assert.Contains("not both", Error("--images", P("one"), "--data", P("list.csv"), "--image", "path"));
        Assert.Contains("Which images? Give --images DIR", Error("--image", "path"));
    }
}
