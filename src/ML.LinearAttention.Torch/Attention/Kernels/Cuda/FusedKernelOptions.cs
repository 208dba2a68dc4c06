namespace Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

/// <summary>
/// The process-wide switches of the fused CUDA kernels, as one immutable record (<see cref="FusedKernelOptions.Current"/>).
/// Each default comes from its environment variable, which stays the way to set it from outside the process; change
/// them in code with a <c>with</c> expression: <c>FusedKernelOptions.Current = FusedKernelOptions.Current with { UseTensorCores = false }</c>.
/// Read at each call (the backward pass follows its forward); mixers also have their own per-layer option.
/// </summary>
public sealed record FusedKernelOptions
{
    /// <summary>
    /// Whether the fused bidirectional kernels run (and the mixers route to them), default on unless
    /// <see cref="FusedLinearAttention.EnableVariable"/> is "0". Off, every fused entry point takes its TorchSharp path.
    /// </summary>
    public bool Enabled { get; init; } = On(FusedLinearAttention.EnableVariable);

    /// <summary>
    /// Whether the tensor-core (mma.sync) kernels run where they apply (bf16/fp16, D and Dv multiples of 16, sm_80 or
    /// newer), default on unless <see cref="FusedLinearAttention.TensorCoreVariable"/> is "0"; fp32 inputs and other
    /// shapes always take the CUDA-core fused kernels. The causal and Hedgehog attention kernels need it.
    /// </summary>
    public bool UseTensorCores { get; init; } = On(FusedLinearAttention.TensorCoreVariable);

    /// <summary>
    /// Whether <c>LinearMixer</c> (causal, normalized, relu/elu) and <c>HedgehogMixer</c> (causal) route to
    /// <see cref="FusedLinearAttention.Causal"/> when its tensor-core kernels take the inputs, default on unless
    /// <see cref="FusedLinearAttention.CausalEnableVariable"/> is "0"; direct calls of <c>Causal</c> ignore it.
    /// </summary>
    public bool CausalEnabled { get; init; } = On(FusedLinearAttention.CausalEnableVariable);

    /// <summary>
    /// Whether <c>DecayKernels</c> (the simple GLA, RetNet and Lightning mixers: one log decay per head and token) route
    /// causal and bidirectional calls to <see cref="FusedDecayAttention"/>'s kernels when they take the inputs, default on
    /// unless <see cref="FusedDecayAttention.EnableVariable"/> is "0" (<c>bench kernels --verify-fused --only decay</c> checks
    /// them on a GPU); direct calls of <c>FusedDecayAttention.Causal</c> ignore it.
    /// </summary>
    public bool DecayEnabled { get; init; } = On(FusedDecayAttention.EnableVariable);

    /// <summary>
    /// Whether <see cref="FusedHedgehogAttention.Bidirectional"/> runs its kernels (φ computed inside the attention
    /// kernels) when they apply, default on unless <see cref="FusedHedgehogAttention.EnableVariable"/> is "0".
    /// </summary>
    public bool HedgehogAttentionEnabled { get; init; } = On(FusedHedgehogAttention.EnableVariable);

    /// <summary>
    /// Whether <see cref="FusedHedgehogMap.Apply(TorchSharp.torch.Tensor)"/> runs its kernels on CUDA, default on unless
    /// <see cref="FusedHedgehogMap.EnableVariable"/> is "0". <c>bench kernels --verify-fused</c> runs them regardless.
    /// </summary>
    public bool HedgehogMapEnabled { get; init; } = On(FusedHedgehogMap.EnableVariable);

    /// <summary>
    /// Whether <see cref="FusedHedgehogProjection.Apply(TorchSharp.torch.Tensor, TorchSharp.torch.Tensor)"/> runs the
    /// projection and the map as one kernel on CUDA, default on unless <see cref="FusedHedgehogProjection.EnableVariable"/>
    /// is "0". <c>bench kernels --verify-fused</c> runs them regardless.
    /// </summary>
    public bool HedgehogProjectionEnabled { get; init; } = On(FusedHedgehogProjection.EnableVariable);

    /// <summary>
    /// Whether the trainer's optimizer step on CUDA runs as the multi-tensor AdamW (clipping, update and the bf16 weight
    /// copy in three launches, <see cref="FusedMultiTensorAdamW"/>), default on unless
    /// <see cref="FusedMultiTensorAdamW.EnableVariable"/> is "0" (<c>bench kernels --verify-fused --only adamw</c> checks it
    /// on a GPU). Off, TorchSharp's per-tensor AdamW runs.
    /// </summary>
    public bool MultiTensorAdamWEnabled { get; init; } = On(FusedMultiTensorAdamW.EnableVariable);

    /// <summary>
    /// Whether <see cref="RmsNorm"/> modules run <see cref="FusedRmsNorm"/>'s kernels on CUDA (one launch forward,
    /// three backward), default on unless <see cref="FusedRmsNorm.EnableVariable"/> is "0"
    /// (<c>bench kernels --verify-fused --only rmsnorm</c> checks them on a GPU). The CPU always runs the libtorch form.
    /// </summary>
    public bool RmsNormEnabled { get; init; } = On(FusedRmsNorm.EnableVariable);

    /// <summary>
    /// Whether <see cref="Rotary.Apply"/> runs <see cref="FusedRotary"/>'s kernel on CUDA (one pass each way, equal to the
    /// libtorch form to the bit), default on (<c>bench kernels --verify-fused --only rotary</c> passes on the GPU; off with
    /// <see cref="FusedRotary.EnableVariable"/> = "0"). The CPU always runs the libtorch form.
    /// </summary>
    public bool RotaryEnabled { get; init; } = On(FusedRotary.EnableVariable);

    /// <summary>
    /// Whether <c>DeltaRule</c>'s chunkwise form (DeltaNet, Gated DeltaNet, KDA, MoM) runs its sequential chunk scan as
    /// <see cref="FusedDeltaRuleState"/>'s kernels on CUDA (one launch each way instead of a host loop), default on unless
    /// <see cref="FusedDeltaRuleState.EnableVariable"/> is "0" (<c>bench kernels --verify-fused --only delta</c> checks it
    /// on a GPU). The CPU always runs the loop.
    /// </summary>
    public bool DeltaRuleEnabled { get; init; } = On(FusedDeltaRuleState.EnableVariable);

    /// <summary>
    /// Tuning knob: blocks per SM (1 to 8) Hedgehog's attention kernels are compiled for below
    /// <see cref="FusedHedgehogAttention.OneBlockPerSmFrom"/> tokens (HH_MINB), or null for the source's default (two up
    /// to 64-wide x and v, else one). Default from <see cref="HedgehogAttentionBlocksVariable"/>.
    /// </summary>
    public int? HedgehogAttentionBlocksPerSm
    {
        get => _attentionBlocks;
        init => _attentionBlocks = value is null or (>= 1 and <= 8) ? value
            : throw new ArgumentOutOfRangeException(nameof(HedgehogAttentionBlocksPerSm), value, "Blocks per SM run from 1 to 8.");
    }
    private readonly int? _attentionBlocks = ParseAttentionBlocks(Environment.GetEnvironmentVariable(HedgehogAttentionBlocksVariable));

    /// <summary>
    /// Tuning knob: blocks per SM (each 1 to 8) <c>hedgehog_proj_fwd</c> and <c>hedgehog_proj_bwd</c> are compiled for at
    /// D·F ≤ 64·64 (HFWD_MINB, HBWD_MINB), or null for the source's defaults (2, 2); <c>hedgehog_dw_bwd</c> keeps its own.
    /// Default from <see cref="HedgehogProjectionBlocksVariable"/> ("forward,backward").
    /// </summary>
    public (int Forward, int Backward)? HedgehogProjectionBlocksPerSm
    {
        get => _projectionBlocks;
        init => _projectionBlocks = value is null || (value.Value.Forward is >= 1 and <= 8 && value.Value.Backward is >= 1 and <= 8) ? value
            : throw new ArgumentOutOfRangeException(nameof(HedgehogProjectionBlocksPerSm), value, "Blocks per SM run from 1 to 8.");
    }
    private readonly (int Forward, int Backward)? _projectionBlocks = ParseProjectionBlocksVariable(Environment.GetEnvironmentVariable(HedgehogProjectionBlocksVariable));

    /// <summary>Environment variable of <see cref="HedgehogAttentionBlocksPerSm"/>'s default.</summary>
    public const string HedgehogAttentionBlocksVariable = "ML_LINEARATTENTION_HEDGEHOG_ATTENTION_BLOCKS";

    /// <summary>Environment variable of <see cref="HedgehogProjectionBlocksPerSm"/>'s default ("forward,backward", e.g. "2,2").</summary>
    public const string HedgehogProjectionBlocksVariable = "ML_LINEARATTENTION_HEDGEHOG_PROJECTION_BLOCKS";

    private static FusedKernelOptions? _current;

    /// <summary>
    /// The switches every fused entry point reads, created from the environment on first use (a malformed tuning
    /// variable throws here, naming it). Set a whole record, usually <c>Current with { … }</c>; null is refused.
    /// </summary>
    public static FusedKernelOptions Current
    {
        get => Volatile.Read(ref _current) ?? Initialize();
        set => Volatile.Write(ref _current, value ?? throw new ArgumentNullException(nameof(value)));
    }

    private static FusedKernelOptions Initialize()
    {
        var fresh = new FusedKernelOptions();
        return Interlocked.CompareExchange(ref _current, fresh, null) ?? fresh;
    }

    private static bool On(string variable) => Environment.GetEnvironmentVariable(variable) != "0";

    /// <summary>The attention knob's value (null when unset); an error naming the variable when malformed.</summary>
    internal static int? ParseAttentionBlocks(string? value)
    {
        if (string.IsNullOrWhiteSpace(value)) return null;
        if (!int.TryParse(value, out int blocks) || blocks is < 1 or > 8)
            throw new InvalidOperationException($"{HedgehogAttentionBlocksVariable} = '{value}' is not a number of blocks per SM from 1 to 8; fix or unset it.");
        return blocks;
    }

    /// <summary>The projection knob's value (null when unset); an error naming the variable when malformed.</summary>
    internal static (int Forward, int Backward)? ParseProjectionBlocksVariable(string? value)
    {
        if (string.IsNullOrWhiteSpace(value)) return null;
        return ParseProjectionBlocks(value) ?? throw new InvalidOperationException(
            $"{HedgehogProjectionBlocksVariable} = '{value}' is not 'forward,backward' blocks per SM, each 1 to 8 (e.g. '2,2'); fix or unset it.");
    }

    /// <summary>"f,b" with 1 ≤ f, b ≤ 8, else null.</summary>
    internal static (int Forward, int Backward)? ParseProjectionBlocks(string? value)
    {
        var parts = value?.Split(',');
        return parts is { Length: 2 } && int.TryParse(parts[0], out int f) && int.TryParse(parts[1], out int b) && f is >= 1 and <= 8 && b is >= 1 and <= 8
            ? (f, b)
            : null;
    }
}
