using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.FineTuning.Lora;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.FineTuning;

public sealed class LoraTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("la-lora-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly LoraOptions AllLinear = new() { Targets = new[] { "q_proj", "k_proj", "v_proj", "o_proj", "ffn_in", "ffn_out" } };

    private static void Randomize(nn.Module model, double scale = 0.1)
    {
        using var _ = no_grad();
        foreach (var (_, layer) in LoraLayers.Layers(model)) { layer.LoraA.copy_(randn_like(layer.LoraA) * scale); layer.LoraB.copy_(randn_like(layer.LoraB) * scale); }
    }

    [Fact]
    public void WrapsTheTargetsAndLeavesTheOutputUnchangedAtInit()
    {
        Torch.Seed();
        using var model = new SequenceModel(TinyModels.Config());
        using var batch = TinyModels.Batch(5, 9);
        var before = TinyModels.Eval(model, batch);
        var result = LoraLayers.Apply(model, AllLinear);
        Assert.Equal(2 * 6, result.Wrapped.Count);
        Assert.Contains("blocks.0.mixer.q_proj", result.Wrapped);
        Assert.Contains("blocks.1.ffn_out", result.Wrapped);
        KernelAssert.Close(TinyModels.Eval(model, batch), before, 1e-6, 1e-6, "LoRA at init");
        // The base weights keep their state names; the adapters add lora_A / lora_B.
        var names = model.state_dict().Keys.ToList();
        Assert.Contains("blocks.0.mixer.q_proj.weight", names);
        Assert.Contains("blocks.0.mixer.q_proj.lora_A", names);
        Assert.Contains("blocks.1.ffn_in.bias", names);
    }

    [Fact]
    public void OnlyAdaptersRequireGradInWrappedLayersAndBGetsTheFirstGradient()
    {
        Torch.Seed();
        using var model = new SequenceModel(TinyModels.Config(layers: 1));
        LoraLayers.Apply(model, AllLinear);
        foreach (var (_, layer) in LoraLayers.Layers(model))
        {
            Assert.False(layer.BaseWeight.requires_grad);
            Assert.False(layer.BaseBias?.requires_grad ?? false);
            Assert.True(layer.LoraA.requires_grad && layer.LoraB.requires_grad);
        }
        using var batch = TinyModels.Batch(6, 4);
        model.train();
        nn.functional.cross_entropy(model.Forward(batch), batch.Labels!).backward();
        foreach (var (name, layer) in LoraLayers.Layers(model))
        {
            Assert.Null(layer.BaseWeight.grad);
            Assert.True(layer.LoraB.grad!.abs().sum().item<float>() > 0, $"{name}: B has no gradient");
            Assert.Equal(0f, layer.LoraA.grad!.abs().sum().item<float>()); // B = 0 at the start, so A's first gradient is 0
        }
    }

    [Fact]
    public void MergeMatchesTheUnmergedForwardAndUnmergeRestoresTheBase()
    {
        Torch.Seed();
        using var model = new SequenceModel(TinyModels.Config());
        using var batch = TinyModels.Batch(7, 3, 11);
        var baseOut = TinyModels.Eval(model, batch);
        var baseWeight = ((Linear)ModuleSurgeryFind(model, "blocks.0.mixer.v_proj")).weight.detach().clone();
        LoraLayers.Apply(model, AllLinear with { Rank = 4, Alpha = 8 });
        Randomize(model);
        var unmerged = TinyModels.Eval(model, batch);
        Assert.True((unmerged - baseOut).abs().max().item<float>() > 1e-3, "the random adapters should change the output");
        LoraLayers.Merge(model);
        Assert.All(LoraLayers.Layers(model), l => Assert.True(l.Layer.Merged));
        KernelAssert.Close(TinyModels.Eval(model, batch), unmerged, 1e-5, 1e-4, "merged vs unmerged");
        LoraLayers.Unmerge(model);
        KernelAssert.Close(TinyModels.Eval(model, batch), unmerged, 1e-5, 1e-4, "unmerged again");
        var v = LoraLayers.Layers(model).Single(l => l.Name == "blocks.0.mixer.v_proj").Layer;
        KernelAssert.Close(v.BaseWeight, baseWeight, 1e-6, 1e-5, "base weight after merge + unmerge");

        Assert.Equal(12, LoraLayers.MergeAndUnload(model));
        Assert.Empty(LoraLayers.Layers(model));
        Assert.IsType<Linear>(ModuleSurgeryFind(model, "blocks.1.ffn_in"));
        KernelAssert.Close(TinyModels.Eval(model, batch), unmerged, 1e-5, 1e-4, "merged and unloaded");
        Assert.DoesNotContain(model.state_dict().Keys, k => k.Contains("lora_"));
    }

    [Fact]
    public void AdapterRoundTripsOntoAFreshBaseModel()
    {
        Torch.Seed(7);
        using var trained = new SequenceModel(TinyModels.Config());
        var baseState = trained.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());
        var options = new LoraOptions { Rank = 2, Alpha = 4, Targets = new[] { "q_proj", "v_proj" } };
        LoraLayers.Apply(trained, options);
        Randomize(trained);
        using var batch = TinyModels.Batch(8, 5);
        var expected = TinyModels.Eval(trained, batch);
        LoraAdapterFile.Save(trained, options, _dir);
        Assert.True(new FileInfo(Path.Combine(_dir, LoraAdapterFile.WeightsFileName)).Length < 4096, "the adapter file holds the adapters only");

        Torch.Seed(99); // a different init, then the base weights
        using var fresh = new SequenceModel(TinyModels.Config());
        fresh.load_state_dict(baseState);
        var loaded = LoraAdapterFile.Load(fresh, _dir);
        Assert.Equal(options.Rank, loaded.Rank);
        Assert.Equal(4, LoraLayers.Layers(fresh).Count);
        KernelAssert.Close(TinyModels.Eval(fresh, batch), expected, 1e-6, 1e-6, "adapter loaded onto a fresh base");
    }

    [Fact]
    public void ClearErrorsForNoMatchAndForMechanismsWithSealedProjections()
    {
        Torch.Seed();
        using var model = new SequenceModel(TinyModels.Config(layers: 1));
        var none = Assert.Throws<ArgumentException>(() => LoraLayers.Apply(model, new LoraOptions { Targets = new[] { "query" } }));
        Assert.Contains("matched no linear layer", none.Message);
        Assert.Contains("blocks.0.ffn_in", none.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => LoraLayers.Apply(model, new LoraOptions { Rank = 0 }));

        // GLA's output gate is a Linear field (not a declared projection), so it cannot be wrapped; its declared
        // projections and the FFN can.
        using var gla = new SequenceModel(TinyModels.Config("gla", layers: 1));
        var sealedError = Assert.Throws<ArgumentException>(() => LoraLayers.Apply(gla, new LoraOptions { Targets = new[] { "g_proj" } }));
        Assert.Contains("cannot wrap", sealedError.Message);
        Assert.Equal(new[] { "blocks.0.mixer.q_proj", "blocks.0.mixer.k_proj", "blocks.0.mixer.v_proj", "blocks.0.mixer.o_proj" },
            LoraLayers.Apply(gla, new LoraOptions()).Wrapped);
        Assert.Equal(2, LoraLayers.Apply(gla, new LoraOptions { Targets = new[] { "ffn_in", "ffn_out" } }).Wrapped.Count);
    }

    private static nn.Module ModuleSurgeryFind(nn.Module root, string name) => Microsoft.ML.LinearAttention.FineTuning.ModuleSurgery.Find(root, name);
}
