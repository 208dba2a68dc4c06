using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using Microsoft.ML.LinearAttention.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Data;

namespace Microsoft.ML.LinearAttention.Tests.Text;

/// <summary>The GPU-friendly training loop: prefetching producers, mask-free full batches, checkpointing, sync-free clipping.</summary>
public sealed class TrainingPipelineTests
{
    private static Example Row(int length, int seed) => new()
    {
        Ids = Enumerable.Range(0, length).Select(i => 5 + (i * 7 + seed * 13) % 90).ToArray(),
        Segments = new int[length],
        Length = length,
        Label = seed % 3,
    };

    [Fact]
    public void PrefetchedHostBatchesAreExactlyThePlainBucketedBatches()
    {
        var rows = Enumerable.Range(0, 230).Select(i => Row(1 + (i * 37) % 41, i)).ToList();
        var settings = new TrainingSettings { BatchSize = 8, MaxBatchTokens = 150, ShuffleBufferRows = 50 };
        var spec = new CollateSpec(LabelKind.Key, 0, 0, 0, null);
        var plain = Batching.Bucketed(rows, 8, 150, 50, new Random(5)).ToList();
        var prefetched = ModelTrainer.HostBatches(rows, spec, settings, new Random(5), pin: false).ToList();
        Assert.Equal(plain.Count, prefetched.Count);
        for (int i = 0; i < plain.Count; i++)
        {
            using var expected = Batching.Collate(plain[i], CPU, 0, 0, 0, null, LabelKind.Key);
            using var actual = prefetched[i];
            Assert.True(Same(expected.Tokens!, actual.Tokens!), $"batch {i}: tokens differ");
            Assert.True(Same(expected.Labels!, actual.Labels!), $"batch {i}: labels differ");
            Assert.True(Same(expected.Mask, actual.Mask), $"batch {i}: masks differ");
            Assert.Equal(expected.HasPadding, actual.HasPadding);
        }
    }

    private sealed class TextRow
    {
        public string Text { get; set; } = "";
        public string Title { get; set; } = "";
        public float Label { get; set; }
    }

    [Fact]
    public void ParallelTokenizationGivesTheSameStreamAsReadingRowByRow()
    {
        var ml = new MLContext(seed: 1);
        var words = "the invoice payment failed after an update please refund my account twice".Split(' ');
        var data = ml.Data.LoadFromEnumerable(Enumerable.Range(0, 61).Select(i => new TextRow
        {
            Text = string.Join(' ', Enumerable.Range(0, 1 + i % 23).Select(j => words[(i + j * 5) % words.Length])),
            Title = words[i % words.Length],
            Label = i % 7 == 3 ? float.NaN : i, // rows with a missing label are skipped by both
        }).ToList());
        var columns = new InputColumns { TextColumns = new[] { "Title", "Text" }, LabelKind = LabelKind.Float };
        var tokenizer = Tokenization.TextTokenizer.Create(null);
        var plain = new ExampleReader(columns, tokenizer, 16);
        var parallel = new ExampleReader(columns, tokenizer, 16);
        var a = plain.Read(data).ToList();
        var b = parallel.ReadParallel(data, threads: 3, block: 7).ToList();
        Assert.Equal(a.Count, b.Count);
        Assert.True(a.Count < 61);
        for (int i = 0; i < a.Count; i++)
        {
            Assert.Equal(a[i].Label, b[i].Label);
            Assert.Equal(a[i].Ids, b[i].Ids);
            Assert.Equal(a[i].Segments, b[i].Segments);
        }
        Assert.True(plain.TruncatedRows > 0);
        Assert.Equal((plain.TruncatedRows, plain.TruncatedTokens, plain.LongestRow), (parallel.TruncatedRows, parallel.TruncatedTokens, parallel.LongestRow));
    }

    [Fact]
    public void PrefetchRethrowsTheProducersErrorAfterTheItemsBeforeIt()
    {
        static IEnumerable<int> Failing()
        {
            for (int i = 0; i < 5; i++) yield return i;
            throw new InvalidOperationException("row 5 is broken");
        }
        var seen = new List<int>();
        var e = Assert.Throws<InvalidOperationException>(() => { foreach (var i in Prefetch.Ahead(Failing(), 2)) seen.Add(i); });
        Assert.Equal("row 5 is broken", e.Message);
        Assert.Equal(new[] { 0, 1, 2, 3, 4 }, seen);
    }

    [Fact]
    public void StoppingEarlyStopsTheProducerAndDiscardsWhatItMadeAhead()
    {
        int produced = 0, discarded = 0;
        bool sourceDisposed = false;
        IEnumerable<int> Endless()
        {
            try { for (int i = 0; ; i++) { Interlocked.Increment(ref produced); yield return i; } }
            finally { sourceDisposed = true; }
        }
        var taken = Prefetch.Ahead(Endless(), 3, _ => Interlocked.Increment(ref discarded)).Take(4).ToList();
        Assert.Equal(new[] { 0, 1, 2, 3 }, taken);
        Assert.True(sourceDisposed, "the source enumerator was not disposed on the producer thread");
        Assert.Equal(produced, taken.Count + discarded);
    }

    [Fact]
    public void FullBatchesRunWithoutAMaskAndMatchTheMaskedPath()
    {
        Torch.Seed();
        using var model = Tiny("softmax", dropout: 0);
        model.eval();
        using var _ = no_grad();
        var rows = new[] { Row(9, 1), Row(9, 2) };
        using var full = Batching.Collate(rows, CPU, 0, 0, 0, null, null);
        Assert.False(full.HasPadding);
        using var forcedMask = new ModelBatch { Tokens = full.Tokens!.clone(), Segments = full.Segments!.clone(), Mask = full.Mask.clone(), RealTokens = full.RealTokens };
        Assert.True(forcedMask.HasPadding);
        KernelAssert.Close(model.Forward(full), model.Forward(forcedMask), 1e-6, 1e-5, "mask-free full batch");
        using var padded = Batching.Collate(new[] { Row(9, 1), Row(4, 2) }, CPU, 0, 0, 0, null, null);
        Assert.True(padded.HasPadding);
    }

    [Theory]
    [InlineData("hedgehog", 0.0)]
    [InlineData("softmax", 0.2)]
    [InlineData("simple_gla", 0.2)]
    public void CheckpointedBlocksGiveTheSameGradients(string mixer, double dropout)
    {
        Torch.Seed();
        using var model = Tiny(mixer, dropout);
        model.train();
        var rows = new[] { Row(11, 1), Row(6, 2), Row(9, 3) };
        Dictionary<string, Tensor> Gradients(bool checkpoint)
        {
            model.zero_grad();
            model.CheckpointActivations = checkpoint;
            torch.random.manual_seed(99); // same dropout masks in both runs
            using var batch = Batching.Collate(rows, CPU, 0, 0, 0, null, LabelKind.Key);
            var loss = nn.functional.cross_entropy(model.Forward(batch), batch.Labels!);
            loss.backward();
            return model.named_parameters().Where(p => p.parameter.grad is not null).ToDictionary(p => p.name, p => p.parameter.grad!.clone());
        }
        var plain = Gradients(false);
        var checkpointed = Gradients(true);
        Assert.Equal(plain.Keys.OrderBy(k => k), checkpointed.Keys.OrderBy(k => k));
        Assert.Contains(plain.Keys, k => k.Contains("blocks"));
        foreach (var (name, g) in plain)
            KernelAssert.Close(checkpointed[name], g, 1e-6, 1e-5, $"{mixer}: gradient of {name}");
    }

    [Fact]
    public void CheckpointingKeepsTheMaskOfNumericSequencesWithAClsToken()
    {
        // The CLS-extended mask is made inside the model's dispose scope and must survive until backward.
        Torch.Seed();
        using var model = new SequenceModel(new EncoderConfig { NumericFeatures = 3, ModelDim = 16, NumHeads = 2, NumLayers = 2, Pooling = Pooling.Cls, Outputs = 1, Dropout = 0.1 });
        model.train();
        var rows = new[] { new Example { Values = Enumerable.Range(0, 15).Select(i => (float)Math.Sin(i)).ToArray(), Length = 5, Label = 1 },
                           new Example { Values = Enumerable.Range(0, 27).Select(i => (float)Math.Cos(i)).ToArray(), Length = 9, Label = -1 } };
        Tensor[] Gradients(bool checkpoint)
        {
            model.zero_grad();
            model.CheckpointActivations = checkpoint;
            torch.random.manual_seed(5);
            using var batch = Batching.Collate(rows, CPU, 0, 3, 0, null, LabelKind.Float);
            Assert.True(batch.HasPadding);
            nn.functional.mse_loss(model.Forward(batch).squeeze(-1), batch.Labels!).backward();
            GC.Collect(); GC.WaitForPendingFinalizers();
            return model.parameters().Where(p => p.grad is not null).Select(p => p.grad!.clone()).ToArray();
        }
        var plain = Gradients(false);
        var checkpointed = Gradients(true);
        Assert.Equal(plain.Length, checkpointed.Length);
        for (int i = 0; i < plain.Length; i++) KernelAssert.Close(checkpointed[i], plain[i], 1e-6, 1e-5, $"gradient {i}");
    }

    private sealed class FlakyMixer : TokenMixer
    {
        private readonly TorchSharp.Modules.Linear proj;
        public bool Fail { get; set; }

        public FlakyMixer(MixerConfig config) : base(nameof(FlakyMixer), config)
        {
            proj = nn.Linear(config.ModelDim, config.ModelDim);
            RegisterComponents();
        }

        public override Tensor forward(Tensor x, Tensor? keyPaddingMask)
            => Fail ? throw new InvalidOperationException("recomputation failed") : proj.forward(x);
    }

    [Fact]
    public void AFailingRecomputationIsReportedInsteadOfEndingTheProcess()
    {
        Torch.Seed();
        var mixer = new FlakyMixer(new MixerConfig(8, 2));
        using var block = new EncoderBlock(mixer, 8, 2, 0);
        block.train();
        var x = randn(2, 5, 8).requires_grad_(true);
        Exception? failure = null;
        var y = BlockCheckpoint.Run(block, x, null, e => failure = e);
        mixer.Fail = true;
        y.sum().backward(); // an exception escaping into libtorch's engine would end the test process
        Assert.Equal("recomputation failed", Assert.IsType<InvalidOperationException>(failure).Message);
    }

    [Fact]
    public void AFailingRecomputationAboveAnotherCheckpointedBlockIsReportedToo()
    {
        // The failing block's input gradient flows into the checkpointed block below it. Were it undefined, TorchSharp
        // would fill it from the lower block's output cache, which the forward pass's dispose scope has already freed,
        // and the process would end (a 1,048,576-token Fit that ran out of memory while recomputing did so on the GPU).
        Torch.Seed();
        var lowerMixer = new FlakyMixer(new MixerConfig(8, 2));
        var upperMixer = new FlakyMixer(new MixerConfig(8, 2));
        using var lower = new EncoderBlock(lowerMixer, 8, 2, 0);
        using var upper = new EncoderBlock(upperMixer, 8, 2, 0);
        lower.train();
        upper.train();
        var x = randn(2, 5, 8).requires_grad_(true);
        Exception? failure = null;
        Tensor y;
        using (var forward = NewDisposeScope())
        {
            var h = BlockCheckpoint.Run(lower, x, null, e => failure ??= e);
            y = BlockCheckpoint.Run(upper, h, null, e => failure ??= e).MoveToOuterDisposeScope();
        }
        upperMixer.Fail = true;
        y.sum().backward();
        Assert.Equal("recomputation failed", Assert.IsType<InvalidOperationException>(failure).Message);
        Assert.NotNull(x.grad); // the lower block's backward ran on a defined (meaningless) gradient
    }

    [Fact]
    public void SyncFreeClippingMatchesLibtorchClipGradNorm()
    {
        Torch.Seed();
        var a = new[] { new TorchSharp.Modules.Parameter(randn(5, 3)), new TorchSharp.Modules.Parameter(randn(7)), new TorchSharp.Modules.Parameter(randn(2)) };
        var b = a.Select(p => new TorchSharp.Modules.Parameter(p.detach().clone())).ToArray();
        for (int i = 0; i < a.Length; i++)
        {
            a[i].grad = randn(a[i].shape) * (i + 1);
            b[i].grad = a[i].grad!.clone();
        }
        b[2].grad = null; // a parameter without gradient is skipped
        a[2].grad = null;
        nn.utils.clip_grad_norm_(a, 0.5);
        GradientClipping.ClipByGlobalNorm(b, 0.5);
        for (int i = 0; i < 2; i++) KernelAssert.Close(b[i].grad!, a[i].grad!, 1e-7, 1e-6, $"clipped gradient {i}");
        var norm = stack(b.Take(2).Select(p => p.grad!.norm()).ToArray()).norm().item<float>();
        Assert.InRange(norm, 0.4999, 0.5001);
        // Below the limit nothing changes.
        var before = b[0].grad!.clone();
        GradientClipping.ClipByGlobalNorm(b, 10);
        KernelAssert.Close(b[0].grad!, before, 0, 0, "unclipped");
    }

    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    private static SequenceModel Tiny(string mixer, double dropout) => new(new EncoderConfig
    {
        VocabularySize = 100, PadId = 0, ModelDim = 16, NumLayers = 2, NumHeads = 2, FfnMultiplier = 2, Dropout = dropout,
        Position = mixer == "simple_gla" ? PositionEncoding.None : PositionEncoding.Rope, Mixer = mixer, Outputs = 3,
    });
}
