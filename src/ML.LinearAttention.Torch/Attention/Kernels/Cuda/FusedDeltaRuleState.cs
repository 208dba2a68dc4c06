using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

/// <summary>
/// The sequential part of the chunkwise delta rule (DeltaNet, Gated DeltaNet, KDA, MoM) as one CUDA kernel each way
/// (delta_rule_state.cu). Per head and chunk i, with the fp32 state S starting at zero:
/// <code>
///   states[i] = S;   V'_i = U_i − W_i S;   S ← d_i ⊙ S + K̃_iᵀ V'_i
/// </code>
/// The TorchSharp form (<c>DeltaRule</c>'s chunk loop) issues three small ops per chunk forward and autograd about twice
/// as many backward, so past a few thousand tokens the host, not the GPU, sets the pace. The backward kernel runs the
/// same scan in reverse for the gradient reaching each state and the total dV'; dW, dK̃ and dd then follow from batched
/// matmuls. fp32 throughout, on CUDA cores. <c>bench kernels --verify-fused --only delta</c> checks it against the loop on
/// a GPU and tests/FusedKernelEmulator (delta_state.cpp) on the CPU.
/// </summary>
public static class FusedDeltaRuleState
{
    /// <summary>Environment variable that switches the kernels off ("0"): <see cref="FusedKernelOptions.DeltaRuleEnabled"/>'s default.</summary>
    public const string EnableVariable = "ML_LINEARATTENTION_FUSED_DELTA";

    /// <summary>Largest chunk and key dimension the kernel takes (MAXC in the source; shared memory grows with both).</summary>
    public const int MaxChunk = 128, MaxKeyDim = 128;

    /// <summary>State columns per block (DVB in the source).</summary>
    internal const int ColumnsPerBlock = 16;

    /// <summary>
    /// Null when <see cref="Scan"/> runs the kernels for w [N, NC, C, Dk] (the switch is on, CUDA, the shape fits), else
    /// why the chunk loop runs instead.
    /// </summary>
    public static string? Reason(Tensor w, long dv)
    {
        ArgumentNullException.ThrowIfNull(w);
        if (!FusedKernelOptions.Current.DeltaRuleEnabled) return $"switched off ({EnableVariable}=0 or FusedKernelOptions.Current.DeltaRuleEnabled = false).";
        if (!FusedKernelOptions.Current.Enabled) return $"the fused kernels are off ({FusedLinearAttention.EnableVariable}=0).";
        if ((ShapeReason(w, dv) ?? FusedLinearAttention.UnavailableReason(w.device)) is { } reason) return reason;
        int bytes = SharedBytes(w.shape[2], w.shape[3]), limit = FusedModuleCache.Device(w.device_index < 0 ? 0 : w.device_index).MaxSharedOptIn;
        return bytes > limit ? $"chunk {w.shape[2]} with Dk = {w.shape[3]} needs {bytes} bytes of shared memory per block, the device allows {limit}." : null;
    }

    /// <summary>The shape part of <see cref="Reason"/> (no device check), for the CPU tests.</summary>
    internal static string? ShapeReason(Tensor w, long dv)
    {
        if (w.dim() != 4) return $"w is not [N, NC, C, Dk] (shape {Heads.Shape(w)}).";
        long n = w.shape[0], chunk = w.shape[2], dk = w.shape[3];
        if (chunk > MaxChunk) return $"chunk {chunk} is above the kernel's {MaxChunk}.";
        if (dk > MaxKeyDim) return $"the key dimension {dk} is above the kernel's {MaxKeyDim}.";
        if (n > 65535) return $"{n} heads in total (batch × heads) exceed the grid's 65535.";
        if (w.numel() == 0 || dv == 0) return "empty input.";
        return null;
    }

    /// <summary>Dynamic shared memory of one block: A and B of a chunk [C][Dk + 1], x [C][16] and the state slice [Dk][16] (fp32).</summary>
    internal static int SharedBytes(long chunk, long dk) => (int)(4 * (2 * chunk * (dk + 1) + chunk * ColumnsPerBlock + dk * ColumnsPerBlock));

    /// <summary>
    /// The states before every chunk [N, NC, Dk, Dv] and V' [N, NC, C, Dv] (fp32), differentiable in all inputs.
    /// </summary>
    /// <param name="w">W = T·diag(β)·(K ⊙ e^G) [N, NC, C, Dk].</param>
    /// <param name="u">U = T·diag(β)·V [N, NC, C, Dv].</param>
    /// <param name="kToEnd">K̃ = K ⊙ e^(G_last − G) [N, NC, C, Dk].</param>
    /// <param name="endDecay">The chunk's total decay per key channel [N, NC, Dk], or null (no decay).</param>
    public static (Tensor States, Tensor VNew) Scan(Tensor w, Tensor u, Tensor kToEnd, Tensor? endDecay)
    {
        long n = w.shape[0], nc = w.shape[1], chunk = w.shape[2], dk = w.shape[3], dv = u.shape[3];
        var packed = endDecay is null
            ? DeltaRuleStateFunction.apply(w, u, kToEnd, new AutogradArguments(null))
            : DeltaRuleStateFunction.apply(w, u, kToEnd, endDecay, new AutogradArguments(null));
        var states = packed.narrow(-1, 0, dk * dv).view(n, nc, dk, dv);
        var vNew = packed.narrow(-1, dk * dv, chunk * dv).view(n, nc, chunk, dv);
        return (states, vNew);
    }

    /// <summary>
    /// One scan (delta_state_scan): x_i = P_i + sign1·A_i X, X ← d_i ⊙ X + sign2·B_iᵀ x_i + R_i, chunks in order or
    /// reversed. Returns [N, NC, Dk·Dv + C·Dv]: X before each step, then x. P and R are read at (offset, per-chunk stride)
    /// in their tensors; A, B [N, NC, C, Dk] and d [N, NC, Dk] contiguous fp32.
    /// </summary>
    internal static Tensor Run(Tensor p, long pOffset, long pStride, Tensor a, Tensor b, Tensor? r, long rStride, Tensor? decay,
        long dv, float sign1, float sign2, bool reverse)
    {
        long n = a.shape[0], nc = a.shape[1], chunk = a.shape[2], dk = a.shape[3], width = dk * dv + chunk * dv;
        var output = torch.empty(new[] { n, nc, width }, dtype: ScalarType.Float32, device: a.device);
        var kernel = FusedModuleCache.ShapeFreeKernels(a, CudaSources.DeltaRuleState, dynamicShared: true, "delta_state_scan")[0];
        long Offset(Tensor t, long elements) => FusedLaunch.Ptr(t) + 4 * elements;
        FusedModuleCache.Launch(kernel, (dv + ColumnsPerBlock - 1) / ColumnsPerBlock, n, SharedBytes(chunk, dk),
            Offset(p, pOffset), pStride, FusedLaunch.Ptr(a), FusedLaunch.Ptr(b), chunk * dk, FusedLaunch.Ptr(r), rStride,
            FusedLaunch.Ptr(decay), FusedLaunch.Ptr(output), Offset(output, dk * dv), width,
            nc, chunk, dk, dv, BitConverter.SingleToInt32Bits(sign1), BitConverter.SingleToInt32Bits(sign2), reverse ? 1 : 0);
        return output;
    }
}

/// <summary>
/// Autograd wrapper of <see cref="FusedDeltaRuleState"/>: inputs (W, U, K̃[, d]), one packed output [N, NC, Dk·Dv + C·Dv]
/// (the states, then V'). Backward: the reverse scan gives Λ_{i+1} (the gradient reaching the state after chunk i) and
/// the total dV'; then dU = dV', dW = −dV' Sᵀ, dK̃ = V' Λᵀ, dd = Σ_v Λ ⊙ S.
/// </summary>
internal sealed class DeltaRuleStateFunction : autograd.SingleTensorFunction<DeltaRuleStateFunction>
{
    public override string Name => "FusedDeltaRuleState";

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        AutogradWrappers.ReleaseReturned();
        var w = ((Tensor)vars[0]).to(ScalarType.Float32).contiguous();
        var u = ((Tensor)vars[1]).to(ScalarType.Float32).contiguous();
        var kt = ((Tensor)vars[2]).to(ScalarType.Float32).contiguous();
        var d = vars.Length > 4 ? ((Tensor)vars[3]).to(ScalarType.Float32).contiguous() : null;
        long chunk = w.shape[2], dv = u.shape[3];
        var packed = FusedDeltaRuleState.Run(u, 0, chunk * dv, w, kt, null, 0, d, dv, sign1: -1f, sign2: 1f, reverse: false);
        ctx.save_for_backward(d is null ? new List<Tensor> { w, kt, packed.detach() } : new List<Tensor> { w, kt, packed.detach(), d });
        ctx.save_data("dv", dv);
        return packed;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
        => AutogradWrappers.Backward("the fused delta-rule state scan", () =>
        {
            var saved = ctx.get_saved_variables();
            var (w, kt, packed) = (saved[0], saved[1], saved[2]);
            var d = saved.Count > 3 ? saved[3] : null;
            long dv = (long)ctx.get_data("dv"), chunk = w.shape[2], dk = w.shape[3], width = dk * dv + chunk * dv;
            var g = grad_output.to(ScalarType.Float32).contiguous();
            var back = FusedDeltaRuleState.Run(g, dk * dv, width, kt, w, g, width, d, dv, sign1: 1f, sign2: -1f, reverse: true);
            return AutogradWrappers.Return(grad_output, Gradients(packed, back, d is not null, dk, dv));
        });

    /// <summary>
    /// dW, dU, dK̃ (and dd when <paramref name="decayed"/>) from the forward's packed output (S before each chunk, V') and
    /// the reverse scan's (Λ_{i+1}, total dV'): dU = dV', dW = −dV' Sᵀ, dK̃ = V' Λᵀ, dd = Σ_v Λ ⊙ S.
    /// </summary>
    internal static Tensor[] Gradients(Tensor packed, Tensor back, bool decayed, long dk, long dv)
    {
        long n = packed.shape[0], nc = packed.shape[1], chunk = (packed.shape[2] - dk * dv) / dv;
        Tensor State(Tensor x) => x.narrow(-1, 0, dk * dv).view(n, nc, dk, dv);
        Tensor Chunk(Tensor x) => x.narrow(-1, dk * dv, chunk * dv).view(n, nc, chunk, dv);
        var (states, vNew, lambda, dvNew) = (State(packed), Chunk(packed), State(back), Chunk(back));
        var dw = -dvNew.matmul(states.transpose(-1, -2));
        var dkt = vNew.matmul(lambda.transpose(-1, -2));
        return decayed ? new[] { dw, dvNew.contiguous(), dkt, (lambda * states).sum(-1) } : new[] { dw, dvNew.contiguous(), dkt };
    }
}
