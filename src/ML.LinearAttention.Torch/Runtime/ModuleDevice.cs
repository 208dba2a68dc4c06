using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Runtime;

/// <summary>Device moves that also reach submodules added after the model was moved.</summary>
public static class ModuleDevice
{
    /// <summary>
    /// Moves every parameter and buffer of <paramref name="module"/> to <paramref name="device"/>. TorchSharp's
    /// <c>Module.to(device)</c> returns at once when the module itself was already moved there, so a head or adapter
    /// attached later would stay on the CPU (and fail at the first optimizer step on a GPU); this moves each submodule.
    /// </summary>
    public static void MoveAllTo(nn.Module module, Device device)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(device);
        module.to(device);
        foreach (var (_, sub) in module.named_modules()) sub.to(device);
    }
}
