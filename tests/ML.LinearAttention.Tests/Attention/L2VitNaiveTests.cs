using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.HiLo;
using Microsoft.ML.LinearAttention.Attention.L2Vit;
using Microsoft.ML.LinearAttention.Attention.Kernels;
using Microsoft.ML.LinearAttention.Attention.VisionKit;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

/// <summary>
/// L²ViT composes kernels of other mechanisms; here every call the mixer makes, and the mixer as a whole, are checked
/// against straightforward fp32 evaluations written from the paper's formulas and the mixer's own parameters
/// (nothing on the naive side calls library code):
/// <list type="bullet">
/// <item>LGA: o_i = Σ_j a_ij v_j / (Σ_j a_ij + eps·n), a_ij = ReLU(q_i)·ReLU(k_j) over real keys (n real tokens);</item>
/// <item>LCM: o + DW₂(GELU(DW₁(o))), depthwise k×k on the grid (centre row along T for text, class tokens get no term);</item>
/// <item>LWA: softmax(q kᵀ/√d) restricted to the query's window (s×s cells of the grid, s² consecutive tokens for text;
/// class tokens form one window), over real keys;</item>
/// <item>then the output projection, zero at padded positions.</item>
/// </list>
/// </summary>
public class L2VitNaiveTests
{
    private const int Dim = 8, NumHeads = 2;

    public static IEnumerable<object[]> MixerCases() => new[]
    {
        // role, lengths (batch = count), grid (null = text), window, concentration kernel, qkv bias, dtype
        new object[] { L2VitRole.Global, new long[] { 11, 6 }, null!, 7, 3, true, ScalarType.Float32 },
        new object[] { L2VitRole.Global, new long[] { 10, 8 }, new[] { 3, 3 }, 7, 3, true, ScalarType.Float32 },   // class token + 3 × 3 patches
        new object[] { L2VitRole.Global, new long[] { 9 }, new[] { 3, 3 }, 7, 5, false, ScalarType.Float32 },      // kernel wider than the grid
        new object[] { L2VitRole.Global, new long[] { 9, 5 }, null!, 7, 0, true, ScalarType.Float32 },             // no LCM
        new object[] { L2VitRole.Local, new long[] { 11, 6 }, null!, 2, 7, true, ScalarType.Float32 },             // windows of 4 tokens, last partial
        new object[] { L2VitRole.Local, new long[] { 13, 9 }, new[] { 3, 4 }, 2, 7, false, ScalarType.Float32 },   // class token, partial 2 × 2 windows
        new object[] { L2VitRole.Global, new long[] { 10, 7 }, new[] { 3, 3 }, 7, 3, true, ScalarType.BFloat16 },
        new object[] { L2VitRole.Local, new long[] { 11, 6 }, null!, 2, 7, true, ScalarType.BFloat16 },
    };

    [Theory]
    [MemberData(nameof(MixerCases))]
    public void MixerMatchesANaiveRecomputationFromItsParameters(L2VitRole role, long[] lengths, int[]? grid, int window,
        int concentration, bool qkvBias, ScalarType dtype)
    {
        Torch.Seed();
        long b = lengths.Length, t = lengths.Max();
        (int, int)? g = grid is null ? null : (grid[0], grid[1]);
        using var mixer = new L2VitMixer(new MixerConfig(Dim, NumHeads),
            new L2VitOptions { Role = role, WindowSize = window, ConcentrationKernel = concentration, QkvBias = qkvBias });
        mixer.Grid = g;
        mixer.to(dtype);
        var mask = lengths.Distinct().Count() > 1 ? KernelAssert.LengthMask(lengths) : null;
        var x = KernelAssert.Random(new[] { b, t, (long)Dim }, dtype, requiresGrad: false);
        bool global = role == L2VitRole.Global;
        ModuleAssert.SameOutputsAndGradients(mixer, xi => mixer.forward(xi, mask),
            (xi, p) => NaiveMixer(xi, p, mask, global, g, window, concentration),
            x, dtype, $"L2ViT {role} grid={g} s={window} lcm={concentration} {dtype}", mask?.unsqueeze(-1));
    }

    public static IEnumerable<object[]> KernelCases() => new[]
    {
        new object[] { new long[] { 11 }, null!, 2, ScalarType.Float32 },
        new object[] { new long[] { 12, 7, 1 }, null!, 2, ScalarType.Float32 },
        new object[] { new long[] { 13, 10 }, new[] { 3, 4 }, 2, ScalarType.Float32 },
        new object[] { new long[] { 12, 9 }, new[] { 3, 4 }, 3, ScalarType.BFloat16 },
    };

    /// <summary>The two kernel calls of the mixer, on raw q/k/v (ReLU inside for LGA), against the quadratic forms.</summary>
    [Theory]
    [MemberData(nameof(KernelCases))]
    public void GlobalAndLocalKernelCallsMatchTheirQuadraticForms(long[] lengths, int[]? grid, int window, ScalarType dtype)
    {
        Torch.Seed();
        (int, int)? g = grid is null ? null : (grid[0], grid[1]);
        var (q, k, v) = KernelAssert.Qkv(lengths, dtype, heads: 2, dk: 4, dv: 5);
        var mask = lengths.Distinct().Count() > 1 ? KernelAssert.LengthMask(lengths) : null;
        var outMask = mask is null ? null : KernelAssert.HeadMask(mask);
        KernelAssert.SameOutputsAndGradients(
            i => LinearAttentionKernels.Bidirectional(nn.functional.relu(i[0]), nn.functional.relu(i[1]), i[2], mask),
            i => NaiveReluLinear(i[0], i[1], i[2], mask).to(dtype),
            new[] { q, k, v }, dtype, $"LGA kernel {dtype}", outMask);
        KernelAssert.SameOutputsAndGradients(
            i => HiLoKernels.LocalWindow(i[0], i[1], i[2], mask, g, window),
            i => NaiveWindowSoftmax(i[0], i[1], i[2], mask, g, window).to(dtype),
            new[] { q, k, v }, dtype, $"LWA kernel grid={g} s={window} {dtype}", outMask);
    }

    /// <summary>The LCM's depthwise convolutions (DepthwiseConv.Forward) against an explicit sum over taps.</summary>
    [Theory]
    [InlineData(new long[] { 9, 5 }, 0, 0, 3, ScalarType.Float32)]
    [InlineData(new long[] { 13, 9 }, 3, 4, 3, ScalarType.Float32)]
    [InlineData(new long[] { 10, 6 }, 3, 3, 5, ScalarType.BFloat16)]
    public void ConcentrationConvolutionMatchesAnExplicitSumOverTaps(long[] lengths, int gh, int gw, int kernel, ScalarType dtype)
    {
        Torch.Seed();
        (int, int)? g = gh == 0 ? null : (gh, gw);
        using var conv = new DepthwiseConv(Dim, kernel);
        conv.to(dtype);
        var mask = KernelAssert.LengthMask(lengths);
        var x = KernelAssert.Random(new[] { (long)lengths.Length, lengths.Max(), (long)Dim }, dtype, requiresGrad: false);
        ModuleAssert.SameOutputsAndGradients(conv, xi => conv.Forward(xi, mask, g),
            (xi, p) => NaiveDepthwise(xi.to(ScalarType.Float32), p["weight"], p["bias"], mask, g),
            x, dtype, $"LCM conv k={kernel} grid={g} {dtype}", mask.unsqueeze(-1));
    }

    // ---- naive side: nothing here calls the library ----

    private static Tensor NaiveMixer(Tensor x, IReadOnlyDictionary<string, Tensor> p, Tensor? mask, bool global, (int, int)? grid,
        int window, int concentration)
    {
        long c = Dim;
        var xf = x.to(ScalarType.Float32);
        var qkv = xf.matmul(p["qkv.weight"].t());                                          // [B, T, 3C]: q | k | v
        if (p.TryGetValue("qkv.bias", out var qkvBias)) qkv = qkv + qkvBias;
        var q = ToHeads(qkv.narrow(-1, 0, c));
        var k = ToHeads(qkv.narrow(-1, c, c));
        var v = ToHeads(qkv.narrow(-1, 2 * c, c));
        Tensor o;
        if (global)
        {
            o = FromHeads(NaiveReluLinear(q, k, v, mask));
            if (concentration > 0)
            {
                var inner = NaiveDepthwise(o, p["lcm1.weight"], p["lcm1.bias"], mask, grid);
                var gelu = 0.5 * inner * (1 + (inner / Math.Sqrt(2)).erf());
                o = o + NaiveDepthwise(gelu, p["lcm2.weight"], p["lcm2.bias"], mask, grid);
            }
        }
        else o = FromHeads(NaiveWindowSoftmax(q, k, v, mask, grid, window));
        var y = o.matmul(p["proj.weight"].t()) + p["proj.bias"];
        return mask is null ? y : y * mask.unsqueeze(-1).to(ScalarType.Float32);
    }

    // [B, T, H·D] → [B, H, T, D]: head h owns channels h·D … h·D + D − 1.
    private static Tensor ToHeads(Tensor x) => x.reshape(x.shape[0], x.shape[1], NumHeads, Dim / NumHeads).permute(0, 2, 1, 3);

    private static Tensor FromHeads(Tensor x) => x.permute(0, 2, 1, 3).reshape(x.shape[0], x.shape[2], Dim);

    /// <summary>Normalized ReLU linear attention with the explicit [T, T] weights, fp32, zero at padded queries.</summary>
    private static Tensor NaiveReluLinear(Tensor q, Tensor k, Tensor v, Tensor? mask, double eps = 1e-6)
    {
        long b = q.shape[0], t = q.shape[2];
        var fq = q.to(ScalarType.Float32).clamp_min(0);
        var fk = k.to(ScalarType.Float32).clamp_min(0);
        var a = fq.matmul(fk.transpose(-1, -2));                                            // a_ij = φ(q_i)·φ(k_j)
        Tensor n = torch.tensor((float)t);
        if (mask is not null)
        {
            var real = mask.to(ScalarType.Float32);
            a = a * real.view(b, 1, 1, t);                                                  // padded keys weigh nothing
            n = real.sum(1).view(b, 1, 1, 1);
        }
        var o = a.matmul(v.to(ScalarType.Float32)) / (a.sum(-1, keepdim: true) + eps * n);
        return mask is null ? o : o * mask.to(ScalarType.Float32).view(b, 1, t, 1);
    }

    /// <summary>Window index of every token (class tokens share one window; grid windows are s×s cells).</summary>
    private static long[] WindowOf(long t, (int Height, int Width)? grid, int s)
    {
        var ids = new long[t];
        if (grid is null)
        {
            for (long i = 0; i < t; i++) ids[i] = i / (s * s);
            return ids;
        }
        var (gh, gw) = grid.Value;
        long prefix = t - (long)gh * gw;
        for (long i = 0; i < t; i++)
        {
            if (i < prefix) { ids[i] = -1; continue; }
            long cell = i - prefix, row = cell / gw, col = cell % gw;
            ids[i] = row / s * 1000 + col / s;
        }
        return ids;
    }

    /// <summary>Softmax attention restricted to same-window real keys, explicit [T, T] mask, fp32.</summary>
    private static Tensor NaiveWindowSoftmax(Tensor q, Tensor k, Tensor v, Tensor? mask, (int, int)? grid, int s)
    {
        long b = q.shape[0], t = q.shape[2];
        var ids = WindowOf(t, grid, s);
        var same = new bool[t * t];
        for (long i = 0; i < t; i++)
            for (long j = 0; j < t; j++) same[i * t + j] = ids[i] == ids[j];
        var allowed = torch.tensor(same, new long[] { 1, 1, t, t });
        if (mask is not null) allowed = allowed & mask.view(b, 1, 1, t);
        var scores = q.to(ScalarType.Float32).matmul(k.to(ScalarType.Float32).transpose(-1, -2)) / Math.Sqrt(q.shape[3]);
        // −1e30 rather than −∞: a padded query whose window holds no real key stays finite (and is zeroed below).
        var weights = torch.where(allowed, scores, torch.tensor(-1e30f)).softmax(-1);
        var o = weights.matmul(v.to(ScalarType.Float32));
        return mask is null ? o : o * mask.to(ScalarType.Float32).view(b, 1, t, 1);
    }

    /// <summary>
    /// Depthwise k×k convolution with zero padding, as an explicit sum over taps: y[p] = b + Σ_(dy,dx) w[dy, dx] · x[p + (dy, dx)],
    /// x zero outside the grid. 1D along T with the kernel's centre row for text; 2D over the last H·W tokens of a grid,
    /// leading class tokens getting zero (no bias). Padded tokens are zero on input and output. x [B, T, C] fp32,
    /// weight [C, 1, k, k], bias [C].
    /// </summary>
    private static Tensor NaiveDepthwise(Tensor x, Tensor weight, Tensor bias, Tensor? mask, (int Height, int Width)? grid)
    {
        long b = x.shape[0], t = x.shape[1], c = x.shape[2];
        int kk = (int)weight.shape[2], r = kk / 2;
        var real = mask is null ? torch.ones(b, t, 1) : mask.to(ScalarType.Float32).unsqueeze(-1);
        var xz = x * real;
        var w = weight.select(1, 0);                                                        // [C, k, k]
        Tensor Tap(int dy, int dx) => w.select(1, dy + r).select(1, dx + r);                // [C]
        Tensor y;
        if (grid is null)
        {
            var padded = torch.cat(new[] { torch.zeros(b, r, c), xz, torch.zeros(b, r, c) }, 1);   // x[i] at padded[i + r]
            y = bias.view(1, 1, c).expand(b, t, c);
            for (int o = -r; o <= r; o++) y = y + Tap(0, o) * padded.narrow(1, r + o, t);    // y[i] += w[o] · x[i + o]
        }
        else
        {
            var (gh, gw) = grid.Value;
            long prefix = t - (long)gh * gw;
            var g = xz.narrow(1, prefix, (long)gh * gw).reshape(b, gh, gw, c);               // row-major patches
            var padded = nn.functional.pad(g, new long[] { 0, 0, r, r, r, r });                 // zeros around the grid
            var acc = bias.view(1, 1, 1, c).expand(b, gh, gw, c);
            for (int dy = -r; dy <= r; dy++)
                for (int dx = -r; dx <= r; dx++)
                    acc = acc + Tap(dy, dx) * padded.narrow(1, r + dy, gh).narrow(2, r + dx, gw);
            y = torch.cat(new[] { torch.zeros(b, prefix, c), acc.reshape(b, (long)gh * gw, c) }, 1);
        }
        return y * real;
    }
}
