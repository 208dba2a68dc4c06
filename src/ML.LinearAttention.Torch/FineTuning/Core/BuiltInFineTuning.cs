using Microsoft.ML.LinearAttention.FineTuning.BitFit;
using Microsoft.ML.LinearAttention.FineTuning.FreezeLayers;
using Microsoft.ML.LinearAttention.FineTuning.Full;
using Microsoft.ML.LinearAttention.FineTuning.LinearProbe;
using Microsoft.ML.LinearAttention.FineTuning.Lora;
using Microsoft.ML.LinearAttention.FineTuning.MomentProbing;

namespace Microsoft.ML.LinearAttention.FineTuning;

/// <summary>The built-in methods: adding one is a folder under FineTuning/ and one line here.</summary>
internal static class BuiltInFineTuning
{
    internal static void RegisterAll()
    {
        FineTuningRegistry.Register("full", "Every parameter trains (default).", new FullFineTuning());
        FineTuningRegistry.Register("freeze_layers", "Embeddings and the first n blocks frozen; the rest trains.", new FreezeLayersFineTuning());
        FineTuningRegistry.Register("linear_probe", "Encoder frozen; a linear head (or the model's own head) trains.", new LinearProbeFineTuning());
        FineTuningRegistry.Register("bitfit", "Only biases (and norm gains) plus the head train.", new BitFitFineTuning());
        FineTuningRegistry.Register("lora", "Low-rank adapters on chosen linear layers (q/k/v/o by default) plus the head; merged after training.", new LoraFineTuning());
        FineTuningRegistry.Register("moment_probing", "Encoder frozen; Moment Probing head (first + second order, MHC³) trains.", new MomentProbingFineTuning());
        FineTuningRegistry.Register("psrp", "MP+: Moment Probing head plus PSRP recalibration in every block.", new PsrpFineTuning());
    }
}
