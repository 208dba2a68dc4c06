using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Encoder;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.FineTuning;

/// <summary>Where a parameter sits in a <see cref="SequenceModel"/>.</summary>
public enum ModelPart
{
    /// <summary>Everything before the blocks: token/segment/position embeddings, the numeric-step projection, the CLS vector.</summary>
    Stem,
    /// <summary>An encoder block (see <see cref="ModelParameter.Block"/>).</summary>
    Block,
    /// <summary>The final norm after the blocks.</summary>
    FinalNorm,
    /// <summary>The task head: built-in head, replacement head, side-feature projection.</summary>
    Head,
}

/// <summary>One parameter of a <see cref="SequenceModel"/> as the fine-tuning methods see it.</summary>
/// <param name="Name">State name, e.g. <c>blocks.1.mixer.q_proj.weight</c>.</param>
/// <param name="Part">Where it sits.</param>
/// <param name="Block">0-based block index for <see cref="ModelPart.Block"/>, else -1.</param>
/// <param name="IsBias">A bias vector (its own name is <c>bias</c>).</param>
/// <param name="IsNorm">A weight or bias of a normalization layer (RMSNorm, LayerNorm).</param>
/// <param name="Parameter">The tensor.</param>
public sealed record ModelParameter(string Name, ModelPart Part, int Block, bool IsBias, bool IsNorm, Parameter Parameter)
{
    private static readonly string[] HeadPrefixes = { "head_norm.", "head_dense.", "head_out.", "side_projection.", "probe_head." };

    /// <summary>The parameter's own (last) name segment, e.g. <c>lora_A</c>.</summary>
    public string LeafName => Name[(Name.LastIndexOf('.') + 1)..];

    /// <summary>Every parameter of <paramref name="model"/>, classified.</summary>
    public static IReadOnlyList<ModelParameter> All(SequenceModel model)
    {
        var modules = model.named_modules().ToDictionary(m => m.name, m => m.module);
        var result = new List<ModelParameter>();
        foreach (var (name, p) in model.named_parameters())
        {
            int dot = name.LastIndexOf('.');
            var owner = dot < 0 ? null : modules.GetValueOrDefault(name[..dot]);
            bool isNorm = owner is RmsNorm or LayerNorm;
            bool isBias = name[(dot + 1)..] == "bias";
            int block = -1;
            ModelPart part;
            if (HeadPrefixes.Any(name.StartsWith)) part = ModelPart.Head;
            else if (name.StartsWith("final_norm.", StringComparison.Ordinal)) part = ModelPart.FinalNorm;
            else if (name.StartsWith("blocks.", StringComparison.Ordinal))
            {
                part = ModelPart.Block;
                block = int.Parse(name.Split('.')[1], System.Globalization.CultureInfo.InvariantCulture);
            }
            else part = ModelPart.Stem;
            result.Add(new ModelParameter(name, part, block, isBias, isNorm, p));
        }
        return result;
    }
}
