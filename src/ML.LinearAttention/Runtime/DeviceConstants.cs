using System.Globalization;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Runtime;

/// <summary>
/// Small constant fp32 tensors (per-head decays and slopes, image normalisation) made once per device and kept.
/// Building them from a .NET array in every forward copies from pageable host memory to the GPU, which libtorch follows
/// with a stream synchronization: the host then waits for all queued GPU work on every call and cannot run ahead of
/// the GPU (RetNet's chunked steps, which did this, were the only short kernel chains `bench kernels` found host-bound
/// on the H200, at every length: the mark of a synchronizing step).
/// </summary>
internal static class DeviceConstants
{
    private static readonly object Gate = new();
    private static readonly Dictionary<(string Key, DeviceType Type, int Index), Tensor> Cache = new();

    /// <summary>
    /// The values as an fp32 tensor [n] on <paramref name="device"/>: shared and read-only (never modify it in place or
    /// dispose it). <paramref name="name"/> says what they are; the values are part of the key.
    /// </summary>
    public static Tensor Get(string name, IReadOnlyList<float> values, Device device)
    {
        ArgumentNullException.ThrowIfNull(values);
        ArgumentNullException.ThrowIfNull(device);
        var key = (name + ":" + string.Join(",", values.Select(v => v.ToString("R", CultureInfo.InvariantCulture))), device.type, device.index);
        lock (Gate)
        {
            if (Cache.TryGetValue(key, out var cached) && !cached.IsInvalid) return cached;
            using var noGrad = torch.no_grad();
            var tensor = torch.tensor(values.ToArray(), device: device).DetachFromDisposeScope();
            Cache[key] = tensor;
            return tensor;
        }
    }
}
