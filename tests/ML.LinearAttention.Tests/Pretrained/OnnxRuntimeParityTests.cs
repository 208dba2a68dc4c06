using System.Diagnostics;
using System.Reflection;
using Microsoft.ML.LinearAttention.Pretrained;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using Microsoft.ML.OnnxRuntime;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Pretrained;

/// <summary>
/// Proof of the weight mapping: the reference TorchSharp BERT built from the imported checkpoint gives the same
/// sentence embeddings as ONNX Runtime running the very ONNX model the checkpoint was read from.
/// </summary>
public class OnnxRuntimeParityTests(ITestOutputHelper output)
{
    // Used only when ../shared/data is absent, so the mapping is still checked on real text.
    private static readonly string[] Fallback =
    {
        "it 's a charming and often affecting journey .",
        "unflinchingly bleak and desperate",
        "The quick brown fox jumps over the lazy dog.",
        "I would not recommend this phone to anyone; the battery died in two days.",
        "Great food, friendly staff, and the prices were fair!",
        "Transformers replaced recurrent networks for most NLP tasks around 2018.",
    };

    [Theory]
    [InlineData(BertCheckpoint.MiniLmAssembly, 100)]
    [InlineData(BertCheckpoint.ArcticXsAssembly, 24)]
    public void MeanPooledEmbeddingsMatchOnnxRuntime(string package, int sentences)
    {
        Torch.Seed();
        var texts = SharedData.Sst2Sentences(sentences);
        if (texts is null)
        {
            output.WriteLine($"shared/data/sst2/test.tsv not found beside the repository: checking {Fallback.Length} built-in sentences instead of {sentences} SST-2 ones.");
            texts = Fallback;
        }
        var clock = Stopwatch.StartNew();
        var assembly = Assembly.Load(package);
        byte[] onnx;
        using (var s = assembly.GetManifestResourceStream(package + ".Resources.model.onnx")!)
        {
            onnx = new byte[s.Length];
            s.ReadExactly(onnx);
        }
        BertCheckpoint checkpoint;
        using (var vocab = assembly.GetManifestResourceStream(package + ".Resources.vocab.txt")!)
            checkpoint = BertCheckpoint.FromOnnx(new MemoryStream(onnx, 0, onnx.Length, false, true), vocab, source: package);
        output.WriteLine($"import {clock.ElapsedMilliseconds} ms: {checkpoint.Config}");

        var tokenizer = BertWordPiece.Create(checkpoint);
        using var options = new SessionOptions { IntraOpNumThreads = 2, InterOpNumThreads = 1 };
        using var session = new InferenceSession(onnx, options);
        using var reference = new BertReference(checkpoint);
        using var noGrad = torch.no_grad();

        output.WriteLine($"tokenizer, ONNX Runtime session and reference ready at {clock.ElapsedMilliseconds} ms");
        var oursTime = new Stopwatch();
        var ortTime = new Stopwatch();
        double worstMean = 1, worstCls = 1;
        const int chunk = 25;
        for (int start = 0; start < texts.Count; start += chunk)
        {
            using var scope = NewDisposeScope();
            var batch = tokenizer.Encode(texts.Skip(start).Take(chunk).ToList(), maxLength: 256);
            var (ids, mask) = batch.ToTensors();
            oursTime.Start();
            var ours = reference.Forward(ids, mask);
            oursTime.Stop();
            ortTime.Start();
            var theirs = RunOnnx(session, batch, checkpoint.Config.HiddenSize);
            ortTime.Stop();

            var cosMean = nn.functional.cosine_similarity(BertReference.MeanPool(ours, mask), BertReference.MeanPool(theirs, mask), 1);
            var cosCls = nn.functional.cosine_similarity(ours[.., 0], theirs[.., 0], 1);
            worstMean = Math.Min(worstMean, cosMean.min().item<float>());
            worstCls = Math.Min(worstCls, cosCls.min().item<float>());
            for (int i = 0; i < batch.BatchSize; i++)
                Assert.True(cosMean[i].item<float>() >= 0.9999f, $"{package}: sentence {start + i} '{texts[start + i]}' has cosine {cosMean[i].item<float>():F6} to ONNX Runtime (< 0.9999).");
        }
        Assert.True(worstCls >= 0.9999, $"{package}: [CLS] states differ from ONNX Runtime (worst cosine {worstCls:F6}).");
        output.WriteLine($"{texts.Count} sentences in {clock.ElapsedMilliseconds} ms (forward: ours {oursTime.ElapsedMilliseconds} ms, ONNX Runtime {ortTime.ElapsedMilliseconds} ms); worst cosine: mean-pooled {worstMean:F7}, [CLS] {worstCls:F7}");
    }

    private static Tensor RunOnnx(InferenceSession session, BertBatch batch, int hidden)
    {
        var shape = new long[] { batch.BatchSize, batch.Length };
        var feeds = new Dictionary<string, OrtValue>
        {
            ["input_ids"] = OrtValue.CreateTensorValueFromMemory(batch.InputIds, shape),
            ["attention_mask"] = OrtValue.CreateTensorValueFromMemory(batch.AttentionMask, shape),
            ["token_type_ids"] = OrtValue.CreateTensorValueFromMemory(new long[batch.InputIds.Length], shape),
        };
        try
        {
            using var run = new RunOptions();
            var inputs = feeds.Where(f => session.InputMetadata.ContainsKey(f.Key)).ToDictionary(f => f.Key, f => f.Value);
            using var results = session.Run(run, inputs, new[] { "last_hidden_state" });
            var data = results[0].GetTensorDataAsSpan<float>().ToArray();
            return tensor(data, new long[] { batch.BatchSize, batch.Length, hidden });
        }
        finally
        {
            foreach (var v in feeds.Values) v.Dispose();
        }
    }
}
