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
    /// The values named by <paramref name="key"/> as an fp32 tensor [n] on <paramref name="device"/>, made by
    /// <paramref name="values"/> on first use: shared and read-only (never modify it in place or dispose it). The key
    /// must determine the values (include every parameter they depend on); it is all a call costs after the first.
    /// </summary>
    public static Tensor Get(string key, Device device, Func<float[]> values)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(values);
        lock (Gate)
        {
            if (Cache.TryGetValue((key, device.type, device.index), out var cached) && !cached.IsInvalid) return cached;
            using var noGrad = torch.no_grad();
            var tensor = torch.tensor(values(), device: device).DetachFromDisposeScope();
            Cache[(key, device.type, device.index)] = tensor;
            return tensor;
        }
    }

    /// <summary>A key for fixed values known up front (a model's configuration): the values themselves, formatted once.</summary>
    public static string KeyOf(string name, IEnumerable<float> values)
        => name + ":" + string.Join(",", values.Select(v => v.ToString("R", CultureInfo.InvariantCulture)));
}
