using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Soft;

/// <summary>
/// SOFT, softmax-free attention (Lu et al., NeurIPS 2021, arXiv 2110.11945; <c>fudan-zvg/SOFT</c>
/// <c>SoftmaxFreeAttentionKernel</c>). A Gaussian kernel replaces softmax, keys are tied to queries (K = Q), and the
/// T×T kernel matrix is approximated through m landmarks L with a Nyström decomposition whose m×m pseudo-inverse
/// comes from Newton–Schulz iterations:
/// <code>
/// q̃ = q / D^¼,  κ(a, b) = exp(−‖a − b‖² / 2)
/// O = κ(q̃, L) · NS(κ(L, L)) · κ(L, q̃_real)ᵀ V            O(T·m·D)
/// NS(A): P = A + 0.01·I,  V₀ = α·P with α = 0.9·2 / max_row_sum(A)²,  V ← 2V − V P V   (20 steps)
/// </code>
/// Shapes: q [B, H, T, D] (unscaled), landmarks [B, H, m, D], v [B, H, T, Dv], landmarkValid [B, m] bool or null,
/// mask [B, T] bool or null; result [B, H, T, Dv] in v's dtype, zero at padded positions. Kernels and the
/// iteration run in fp32. Gradients flow through the iterations (the reference used the exact-inverse gradient).
/// </summary>
public static class SoftKernels
{
    public const int DefaultIterations = 20;

    /// <summary>q / D^¼: the scaling SOFT applies before both the kernel and the landmark pooling.</summary>
    public static Tensor Scale(Tensor q) => q / Math.Pow(q.shape[3], 0.25);

    /// <summary>Fast form: T×m and m×m Gaussian kernels, batched Newton–Schulz, O(T·m·(D + Dv)).</summary>
    public static Tensor Attention(Tensor q, Tensor landmarks, Tensor v, Tensor? landmarkValid, Tensor? keyPaddingMask, int iterations = DefaultIterations)
    {
        Check(q, landmarks, v, landmarkValid, keyPaddingMask, iterations);
        using var scope = NewDisposeScope();
        var qf = Scale(q.to(ScalarType.Float32));
        var lf = landmarks.to(ScalarType.Float32);
        var (k1, k2) = Kernels(qf, lf, landmarkValid);
        var inv = NewtonInverse(k2, iterations);
        var keys = keyPaddingMask is null ? k1 : k1 * keyPaddingMask.to(ScalarType.Float32).view(-1, 1, q.shape[2], 1);
        var o = k1.matmul(inv).matmul(keys.transpose(-1, -2).matmul(v.to(ScalarType.Float32)));
        return Heads.ZeroPadded(o.to(v.dtype), keyPaddingMask).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Naive twin: the same iteration applied to the eigenvalues of the symmetric P (P = U diag(λ) Uᵀ, each step
    /// v ← 2v − v²λ), then the explicit T×T approximate kernel matrix, fp32.
    /// </summary>
    public static Tensor AttentionNaive(Tensor q, Tensor landmarks, Tensor v, Tensor? landmarkValid, Tensor? keyPaddingMask, int iterations = DefaultIterations)
    {
        Check(q, landmarks, v, landmarkValid, keyPaddingMask, iterations);
        using var scope = NewDisposeScope();
        long t = q.shape[2], m = landmarks.shape[2];
        var qf = Scale(q.to(ScalarType.Float32));
        var lf = landmarks.to(ScalarType.Float32);
        var k1 = (-(qf.unsqueeze(3) - lf.unsqueeze(2)).square().sum(-1) / 2).exp();           // [B, H, T, m]
        var k2 = (-(lf.unsqueeze(3) - lf.unsqueeze(2)).square().sum(-1) / 2).exp();           // [B, H, m, m]
        if (landmarkValid is not null)
        {
            var lv = landmarkValid.to(ScalarType.Float32);
            k1 = k1 * lv.view(-1, 1, 1, m);
            k2 = k2 * lv.view(-1, 1, 1, m) * lv.view(-1, 1, m, 1);
        }
        var alpha = 0.9 * 2 / k2.sum(-1).amax(new long[] { -1 }, keepdim: true).square();     // [B, H, 1]
        var p = k2 + torch.eye(m) * 0.01;
        var (lambda, u) = torch.linalg.eigh(p);                                                 // λ [B, H, m]
        var f = alpha * lambda;
        for (int i = 0; i < iterations; i++) f = 2 * f - f * f * lambda;
        var inv = u.matmul(torch.diag_embed(f)).matmul(u.transpose(-1, -2));
        var keyMask = keyPaddingMask is null ? torch.ones(1, 1, 1, t) : keyPaddingMask.to(ScalarType.Float32).view(-1, 1, 1, t);
        var approx = k1.matmul(inv).matmul(k1.transpose(-1, -2)) * keyMask;                   // [B, H, T, T]
        var o = approx.matmul(v.to(ScalarType.Float32));
        return Heads.ZeroPadded(o.to(v.dtype), keyPaddingMask).MoveToOuterDisposeScope();
    }

    /// <summary>SOFT's Newton–Schulz pseudo-inverse of a batch of m×m kernel matrices [.., m, m] (fp32).</summary>
    public static Tensor NewtonInverse(Tensor a, int iterations = DefaultIterations)
    {
        using var scope = NewDisposeScope();
        long m = a.shape[^1];
        var alpha = 0.9 * 2 / a.sum(-1).amax(new long[] { -1 }, keepdim: true).square().unsqueeze(-1);   // [.., 1, 1]
        var p = a + torch.eye(m, dtype: a.dtype, device: a.device) * 0.01;
        var x = alpha * p;
        for (int i = 0; i < iterations; i++) x = 2 * x - x.matmul(p).matmul(x);
        return x.MoveToOuterDisposeScope();
    }

    // Gaussian kernels through ‖a‖² + ‖b‖² − 2a·b (matmuls, no [T, m, D] temporary); invalid landmarks zeroed.
    private static (Tensor k1, Tensor k2) Kernels(Tensor q, Tensor l, Tensor? landmarkValid)
    {
        var qq = q.square().sum(-1, keepdim: true);                                            // [B, H, T, 1]
        var ll = l.square().sum(-1, keepdim: true);                                            // [B, H, m, 1]
        var k1 = (-(qq + ll.transpose(-1, -2) - 2 * q.matmul(l.transpose(-1, -2))).clamp_min(0) / 2).exp();
        var k2 = (-(ll + ll.transpose(-1, -2) - 2 * l.matmul(l.transpose(-1, -2))).clamp_min(0) / 2).exp();
        if (landmarkValid is not null)
        {
            long m = l.shape[2];
            var lv = landmarkValid.to(ScalarType.Float32);
            k1 = k1 * lv.view(-1, 1, 1, m);
            k2 = k2 * lv.view(-1, 1, 1, m) * lv.view(-1, 1, m, 1);
        }
        return (k1, k2);
    }

    private static void Check(Tensor q, Tensor landmarks, Tensor v, Tensor? landmarkValid, Tensor? keyPaddingMask, int iterations)
    {
        Heads.CheckQkv(q, q, v, keyPaddingMask);
        if (landmarks.dim() != 4 || landmarks.shape[0] != q.shape[0] || landmarks.shape[1] != q.shape[1] || landmarks.shape[3] != q.shape[3])
            throw new ArgumentException($"landmarks must be [B, H, m, D] = [{q.shape[0]}, {q.shape[1]}, m, {q.shape[3]}]; got {Heads.Shape(landmarks)}.");
        if (landmarkValid is not null && (landmarkValid.dim() != 2 || landmarkValid.shape[0] != q.shape[0] || landmarkValid.shape[1] != landmarks.shape[2]))
            throw new ArgumentException($"landmarkValid must be [B, m] = [{q.shape[0]}, {landmarks.shape[2]}]; got {Heads.Shape(landmarkValid)}.");
        if (iterations < 1) throw new ArgumentOutOfRangeException(nameof(iterations), iterations, "SOFT needs at least one Newton–Schulz iteration (reference: 20).");
    }
}
