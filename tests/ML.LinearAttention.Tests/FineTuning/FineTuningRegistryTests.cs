using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.FineTuning;
using Microsoft.ML.LinearAttention.FineTuning.BitFit;
using Microsoft.ML.LinearAttention.FineTuning.FreezeLayers;
using Microsoft.ML.LinearAttention.FineTuning.LinearProbe;
using Microsoft.ML.LinearAttention.FineTuning.Lora;
using Microsoft.ML.LinearAttention.FineTuning.MomentProbing;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.FineTuning;

public sealed class FineTuningRegistryTests
{
    private static readonly MomentProbingOptions Small = new() { HiddenDim = 32, Heads = 4 };

    internal static FineTuningOptions? SmallOptions(string method) => method switch
    {
        "moment_probing" => Small,
        "psrp" => new PsrpOptions { Probe = Small, Bottleneck = 4 },
        "lora" => new LoraOptions { Rank = 2, Alpha = 4 },
        _ => null,
    };

    [Fact]
    public void RegistryListsTheCatalogAndOptionsRoundTripThroughJson()
    {
        Assert.Equal(new[] { "bitfit", "freeze_layers", "full", "linear_probe", "lora", "moment_probing", "psrp" }, FineTuningRegistry.All.Select(e => e.Name));
        foreach (var info in FineTuningRegistry.All)
        {
            var options = FineTuningRegistry.DefaultOptions(info.Name);
            var back = FineTuningRegistry.DeserializeOptions(info.Name, FineTuningRegistry.SerializeOptions(options));
            Assert.Equal(FineTuningRegistry.SerializeOptions(options), FineTuningRegistry.SerializeOptions(back));
        }
        var lora = (LoraOptions)FineTuningRegistry.DeserializeOptions("LoRA", "{\"Rank\":4,\"Targets\":[\"v_proj\"]}");
        Assert.Equal(4, lora.Rank);
        Assert.Equal(new[] { "v_proj" }, lora.Targets);
        var psrp = (PsrpOptions)FineTuningRegistry.DeserializeOptions("psrp", "{\"Probe\":{\"Pairs\":2},\"Bottleneck\":8}");
        Assert.Equal(CrossPairs.All, psrp.Probe.Pairs);
        var unknown = Assert.Throws<ArgumentException>(() => FineTuningRegistry.Get("adapterz"));
        Assert.Contains("lora", unknown.Message);
    }

    [Fact]
    public void NewHeadsAndAdaptersJoinTheDeviceTheModelWasAlreadyMovedTo()
    {
        // TorchSharp's Module.to(device) is a no-op on a module already moved there, so parts added afterwards stayed on
        // the CPU (seen on an H200: AdamW failed at the first step with cuda:0 and cpu). The meta device shows it on a CPU.
        var meta = new TorchSharp.torch.Device(TorchSharp.DeviceType.META);
        foreach (var method in FineTuningRegistry.All.Select(e => e.Name))
        {
            Torch.Seed();
            using var model = new SequenceModel(TinyModels.Config());
            model.to(meta);
            FineTuningRegistry.Apply(model, method, SmallOptions(method));
            Assert.All(ModelParameter.All(model), p => Assert.True(p.Parameter.device.type == TorchSharp.DeviceType.META,
                $"{method}: {p.Name} is on {p.Parameter.device}"));
        }
    }

    [Fact]
    public void EachMethodTrainsExactlyItsParameters()
    {
        foreach (var method in FineTuningRegistry.All.Select(e => e.Name))
        {
            Torch.Seed();
            using var model = new SequenceModel(TinyModels.Config());
            var summary = FineTuningRegistry.Apply(model, method, SmallOptions(method));
            var all = ModelParameter.All(model);
            Assert.Equal(all.Sum(p => p.Parameter.numel()), summary.TotalParameters);
            Assert.Equal(all.Where(p => p.Parameter.requires_grad).Sum(p => p.Parameter.numel()), summary.TrainableParameters);
            Assert.Contains("parameters trainable", summary.ToString());
            bool Trains(string name) => all.Single(p => p.Name == name).Parameter.requires_grad;
            switch (method)
            {
                case "full":
                    Assert.Equal(summary.TotalParameters, summary.TrainableParameters);
                    Assert.Null(FineTuningRegistry.SpecOf(model.Config)); // full fine-tuning leaves the saved configuration as before
                    break;
                case "freeze_layers":
                    Assert.False(Trains("token_embedding.weight"));
                    Assert.False(Trains("blocks.0.ffn_in.weight"));
                    Assert.True(Trains("blocks.1.mixer.q_proj.weight"));
                    Assert.True(Trains("final_norm.weight") && Trains("head_out.weight"));
                    break;
                case "linear_probe":
                    Assert.All(all, p => Assert.Equal(p.Part == ModelPart.Head, p.Parameter.requires_grad));
                    Assert.IsType<LinearProbeHead>(model.ProbeHead);
                    break;
                case "bitfit":
                    Assert.True(Trains("blocks.0.ffn_in.bias") && Trains("blocks.0.norm1.weight") && Trains("head_dense.weight"));
                    Assert.False(Trains("blocks.0.ffn_in.weight") || Trains("blocks.0.mixer.q_proj.weight") || Trains("token_embedding.weight"));
                    break;
                case "lora":
                    Assert.All(all, p => Assert.Equal(p.LeafName is "lora_A" or "lora_B" || p.Part == ModelPart.Head, p.Parameter.requires_grad));
                    Assert.Equal(8, LoraLayers.Layers(model).Count);
                    break;
                case "moment_probing":
                case "psrp":
                    Assert.IsType<MomentProbingHead>(model.ProbeHead);
                    Assert.Equal(method == "psrp", all.Any(p => p.Name.Contains("ffn_recalibration") && p.Parameter.requires_grad));
                    break;
            }
            Assert.True(summary.TrainableParameters < summary.TotalParameters || method == "full", method);
        }
    }

    [Fact]
    public void ConfigurationRebuildsTheStructureSoSavedWeightsLoadStrictly()
    {
        foreach (var method in new[] { "linear_probe", "lora", "moment_probing", "psrp" })
        {
            Torch.Seed();
            using var model = new SequenceModel(TinyModels.Config(pooling: Pooling.Cls));
            FineTuningRegistry.Apply(model, method, SmallOptions(method) ?? FineTuningRegistry.DefaultOptions(method));
            if (method == "lora")
            {
                using var _ = TorchSharp.torch.no_grad();
                foreach (var (_, l) in LoraLayers.Layers(model)) l.LoraB.normal_();
            }
            using var batch = TinyModels.Batch(4, 7);
            var expected = TinyModels.Eval(model, batch);
            var json = model.Config.ToJson();
            Assert.Contains(method, json);
            using var rebuilt = FineTuningRegistry.CreateModel(EncoderConfig.FromJson(json));
            rebuilt.load_state_dict(model.state_dict(), strict: true);
            KernelAssert.Close(TinyModels.Eval(rebuilt, batch), expected, 0, 0, method + " rebuilt from its configuration");
        }
    }

    [Fact]
    public void LoraMergesAfterTrainingAndTheConfigurationSaysSo()
    {
        Torch.Seed();
        using var model = new SequenceModel(TinyModels.Config());
        FineTuningRegistry.Apply(model, "lora");
        using (TorchSharp.torch.no_grad())
            foreach (var (_, l) in LoraLayers.Layers(model)) l.LoraB.normal_();
        using var batch = TinyModels.Batch(6, 2);
        var before = TinyModels.Eval(model, batch);
        Assert.Contains("merged into 8", FineTuningRegistry.Finish(model));
        Assert.Empty(LoraLayers.Layers(model));
        Assert.True(FineTuningRegistry.SpecOf(model.Config)!.Finished);
        KernelAssert.Close(TinyModels.Eval(model, batch), before, 1e-5, 1e-4, "merged");
        using var rebuilt = FineTuningRegistry.CreateModel(model.Config);
        rebuilt.load_state_dict(model.state_dict(), strict: true); // plain structure: no adapters to rebuild
        Assert.Null(FineTuningRegistry.Finish(model));
    }

    [Fact]
    public void ClearErrors()
    {
        Torch.Seed();
        using var model = new SequenceModel(TinyModels.Config());
        var wrongType = Assert.Throws<ArgumentException>(() => FineTuningRegistry.Apply(model, "lora", new BitFitOptions()));
        Assert.Contains("LoraOptions", wrongType.Message);
        var layers = Assert.Throws<ArgumentOutOfRangeException>(() => FineTuningRegistry.Apply(model, "freeze_layers", new FreezeLayersOptions { Layers = 3 }));
        Assert.Contains("0..2", layers.Message);
        FineTuningRegistry.Apply(model, "bitfit");
        var twice = Assert.Throws<InvalidOperationException>(() => FineTuningRegistry.Apply(model, "lora"));
        Assert.Contains("already set up", twice.Message);
    }
}
