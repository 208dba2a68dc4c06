using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.VisionKit;

/// <summary>
/// Rotary position embedding tables in the "rotate every two" convention (<see cref="RotaryLayout.Interleaved"/>,
/// applied through <see cref="Rotary.ApplyTables"/>) of the MALA / NaLaFormer reference code: channel
/// pairs (2i, 2i+1) are rotated by position·θ_i.
/// <para>Sequence (no grid): θ = 10000^−linspace(0, 1, D/2), positions 0..T−1 (needs D even).
/// Grid (Height, Width): the first D/2 channels rotate with the row, the last D/2 with the column,
/// θ = 10000^−linspace(0, 1, D/4) (needs D divisible by 4); leading non-grid tokens (class tokens) are not rotated.</para>
/// </summary>
public static class Rope
{
    /// <summary>(cos, sin) tables [T, D] in fp32.</summary>
    public static (Tensor Cos, Tensor Sin) Tables(long t, long dim, (int Height, int Width)? grid, Device device)
    {
        CheckDim(dim, grid);
        using var scope = NewDisposeScope();
        Tensor angles;                                                              // [T, D]
        if (grid is null)
        {
            var theta = Theta(dim / 2, device);                                     // [D]
            angles = torch.arange(t, dtype: ScalarType.Float32, device: device).unsqueeze(1) * theta.unsqueeze(0);
        }
        else
        {
            var (gh, gw) = grid.Value;
            long prefix = LocalConv.GridPrefix(t, grid);
            var theta = Theta(dim / 4, device);                                     // [D/2]
            var idx = torch.arange((long)gh * gw, device: device);
            var row = idx.div(gw, rounding_mode: RoundingMode.floor).to(ScalarType.Float32);
            var col = idx.remainder(gw).to(ScalarType.Float32);
            angles = torch.cat(new[] { row.unsqueeze(1) * theta.unsqueeze(0), col.unsqueeze(1) * theta.unsqueeze(0) }, 1);
            if (prefix > 0) angles = torch.cat(new[] { torch.zeros(prefix, dim, device: device), angles }, 0);
        }
        return (angles.cos().MoveToOuterDisposeScope(), angles.sin().MoveToOuterDisposeScope());
    }

    /// <summary>Rotates x [B, H, T, D] (or any [.., T, D]) with tables [T, D]; computed in fp32, returned in x's dtype.</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin) => Rotary.ApplyTables(x, cos, sin, RotaryLayout.Interleaved);

    /// <summary>Tables for a feature map made of <paramref name="copies"/> concatenated D-dim blocks (NaLaFormer's [φ₊, φ₋]).</summary>
    public static (Tensor Cos, Tensor Sin) Repeat((Tensor Cos, Tensor Sin) tables, int copies)
        => (tables.Cos.repeat(1, copies), tables.Sin.repeat(1, copies));

    /// <summary>Throws a clear error when the head dimension cannot be rotated in this layout.</summary>
    public static void CheckDim(long dim, (int Height, int Width)? grid)
    {
        if (grid is null && dim % 2 != 0)
            throw new ArgumentException($"RoPE needs an even head dimension; got {dim}. Choose NumHeads so that ModelDim / NumHeads is even, or switch Rope off in the options.");
        if (grid is not null && dim % 4 != 0)
            throw new ArgumentException($"2D RoPE on a token grid needs a head dimension divisible by 4; got {dim}. Choose NumHeads accordingly, or switch Rope off in the options.");
    }

    // θ for n pair-frequencies, each repeated for the two channels of its pair: [2n].
    private static Tensor Theta(long n, Device device)
    {
        var exponent = n == 1 ? torch.zeros(1, device: device) : torch.linspace(0, 1, n, device: device);
        return torch.pow(10000.0, -exponent).repeat_interleave(2);
    }
}
