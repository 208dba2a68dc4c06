using System.Diagnostics;
using System.Reflection;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Pretrained;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using Microsoft.ML.LinearAttention.Tests.Pretrained;
using Microsoft.ML.OnnxRuntime;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Training;

namespace Microsoft.ML.LinearAttention.Tests.Conversion;

/// <summary>
/// The BERT layout of our encoder (<see cref="EncoderArchitecture.BertPostNorm"/>) with a checkpoint's weights gives the
/// checkpoint's hidden states: on a tiny random BERT against <see cref="BertReference"/>, and on all-MiniLM-L6-v2 against
/// the reference and ONNX Runtime on real SST-2 sentences.
/// </summary>
public sealed class BertEncoderTests(ITestOutputHelper output)
{
    internal static SequenceModel Load(BertCheckpoint checkpoint, int padId = 0)
    {
        var model = new SequenceModel(BertEncoderWeights.ConfigFor(checkpoint.Config, padId, new EncoderConfig { Outputs = 2, Dropout = 0 }));
        Assert.Equal(BertEncoderWeights.NameMap(checkpoint.Config.NumLayers).Count, BertEncoderWeights.LoadInto(model, checkpoint));
        model.eval();
        return model;
    }

    private static ModelBatch Batch(Tensor ids, Tensor mask, Tensor? types = null) => new()
    {
        Tokens = ids.alias(), Segments = (types ?? zeros_like(ids)).alias(), Mask = mask.ne(0), RealTokens = mask.ne(0).sum().item<long>(),
    };

    [Fact]
    public void TinyBertHiddenStatesMatchTheReferenceWithPaddingAndTokenTypes()
    {
        Torch.Seed();
        using var _ = no_grad();
        var checkpoint = TinyBert.Checkpoint();
        using var ours = Load(checkpoint);
        using var reference = new BertReference(checkpoint);
        var ids = tensor(new long[] { 2, 7, 9, 10, 5, 11, 3, 0, 0, 0, 0, 2, 6, 8, 13, 14, 16, 18, 19, 20, 15, 3 }).view(2, 11);
        var mask = ids.ne(0).to(ScalarType.Int64);
        var types = zeros_like(ids);
        types[1, 6..] = tensor(1L);
        // A third segment (beyond BERT's two token types) shares the last type.
        var oursTypes = types.clone();
        oursTypes[1, 9..] = tensor(2L);
        using var batch = Batch(ids, mask, oursTypes);
        var expected = reference.Forward(ids, mask, types);
        var actual = ours.EncodeTokens(batch).States;
        var m = mask.unsqueeze(-1).to(ScalarType.Float32);
        KernelAssert.Close(actual * m, expected * m, 1e-5, 1e-5, "tiny BERT hidden states");
        Assert.Equal(0f, (actual * (1 - m)).abs().max().item<float>());
    }

    [Fact]
    public void MixersWithoutQKVOProjectionsCannotTakeBertWeights()
    {
        var checkpoint = TinyBert.Checkpoint();
        var config = BertEncoderWeights.ConfigFor(checkpoint.Config, 0, new EncoderConfig { Outputs = 2 }) with
        {
            Layers = EncoderConfig.Plan(i => new LayerMixer(i == 1 ? "retnet" : "softmax"), checkpoint.Config.NumLayers),
        };
        using var model = new SequenceModel(config);
        var e = Assert.Throws<ArgumentException>(() => BertEncoderWeights.LoadInto(model, checkpoint));
        Assert.Contains("layer 1 ('retnet')", e.Message);
        using var wrong = new SequenceModel(config with { Architecture = EncoderArchitecture.PreNorm, Position = PositionEncoding.Rope, Layers = null });
        Assert.Contains("BertPostNorm", Assert.Throws<ArgumentException>(() => BertEncoderWeights.LoadInto(wrong, checkpoint)).Message);
        Assert.Contains("Position = Learned", Assert.Throws<ArgumentException>(() => new SequenceModel(config with { Position = PositionEncoding.Rope })).Message);
    }

    [Fact]
    public void MiniLMInOurEncoderMatchesTheReferenceAndOnnxRuntimeOnRealSentences()
    {
        Torch.Seed();
        var texts = Pretrained.SharedData.Sst2Sentences(100);
        if (texts is null)
        {
            output.WriteLine("shared/data/sst2/test.tsv not found beside the repository: checking built-in sentences instead.");
            texts = new[] { "it 's a charming and often affecting journey .", "unflinchingly bleak and desperate", "The quick brown fox jumps over the lazy dog." };
        }
        var clock = Stopwatch.StartNew();
        var checkpoint = PretrainedBackbones.Load(PretrainedBackbones.AllMiniLmL6V2);
        Assert.Same(checkpoint, PretrainedBackbones.Load("sentence-transformers/all-MiniLM-L6-v2"));
        var tokenizer = PretrainedBackbones.Tokenizer(checkpoint);
        var wordPiece = BertWordPiece.Create(checkpoint);
        using var ours = Load(checkpoint, tokenizer.PadId);
        using var reference = new BertReference(checkpoint);
        byte[] onnx;
        var assembly = Assembly.Load(BertCheckpoint.MiniLmAssembly);
        using (var s = assembly.GetManifestResourceStream(BertCheckpoint.MiniLmAssembly + ".Resources.model.onnx")!)
        {
            onnx = new byte[s.Length];
            s.ReadExactly(onnx);
        }
        using var session = new InferenceSession(onnx, new SessionOptions { IntraOpNumThreads = 2, InterOpNumThreads = 1 });
        output.WriteLine($"MiniLM, tokenizer ({tokenizer}), encoder, reference and ONNX Runtime ready in {clock.ElapsedMilliseconds} ms");

        using var _ = no_grad();
        double worstPooled = 1, worstOrt = 1, worstAbs = 0;
        const int chunk = 25;
        for (int start = 0; start < texts.Count; start += chunk)
        {
            using var scope = NewDisposeScope();
            var part = texts.Skip(start).Take(chunk).ToList();
            var encoded = wordPiece.Encode(part, maxLength: 256);
            // Our tokenizer (built from the checkpoint's vocabulary) gives the same ids.
            for (int i = 0; i < part.Count; i++)
            {
                var row = tokenizer.Encode(new[] { part[i].AsMemory() }, 256).Ids;
                var expectedRow = encoded.InputIds.Skip(i * encoded.Length).Take(row.Length).Select(v => (int)v);
                Assert.Equal(expectedRow, row);
            }
            var (ids, mask) = encoded.ToTensors();
            using var batch = Batch(ids, mask);
            var hidden = ours.EncodeTokens(batch).States;
            var pooled = BertReference.MeanPool(hidden, mask);
            if (start == 0)
            {
                // Token by token against the reference forward on the first chunk (the reference matches ONNX Runtime, OnnxRuntimeParityTests).
                var expected = reference.Forward(ids, mask);
                var m = mask.unsqueeze(-1).to(ScalarType.Float32);
                worstAbs = Math.Max(worstAbs, ((hidden - expected) * m).abs().max().item<float>());
                worstPooled = nn.functional.cosine_similarity(pooled, BertReference.MeanPool(expected, mask), 1).min().item<float>();
                KernelAssert.Close(ours.Encode(batch), pooled, 1e-6, 1e-5, "Encode = mean pooling of EncodeTokens");
            }
            var cosOrt = nn.functional.cosine_similarity(pooled, BertReference.MeanPool(RunOnnx(session, encoded, checkpoint.Config.HiddenSize), mask), 1);
            worstOrt = Math.Min(worstOrt, cosOrt.min().item<float>());
            for (int i = 0; i < part.Count; i++)
                Assert.True(cosOrt[i].item<float>() >= 0.9999f, $"sentence {start + i} '{part[i]}': cosine {cosOrt[i].item<float>():F6} to ONNX Runtime (< 0.9999).");
        }
        output.WriteLine($"{texts.Count} sentences in {clock.ElapsedMilliseconds} ms; worst mean-pooled cosine: reference {worstPooled:F7}, ONNX Runtime {worstOrt:F7}; worst |Δ hidden| vs reference {worstAbs:G3}");
        Assert.True(worstPooled >= 0.99999, $"mean-pooled embeddings differ from the reference (worst cosine {worstPooled:F7}).");
        Assert.True(worstAbs < 1e-3, $"hidden states differ from the reference by up to {worstAbs:G3}.");
    }

    internal static Tensor RunOnnx(InferenceSession session, BertBatch batch, int hidden)
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
            return tensor(results[0].GetTensorDataAsSpan<float>().ToArray(), new long[] { batch.BatchSize, batch.Length, hidden });
        }
        finally
        {
            foreach (var v in feeds.Values) v.Dispose();
        }
    }
}
