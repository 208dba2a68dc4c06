using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Runtime;

/// <summary>
/// Raw storage addresses of TorchSharp tensors, for handing CUDA tensors to native libraries (NCCL, our own CUDA
/// kernels). TorchSharp 0.107 exposes no public data pointer, so this calls the same exported entry point its own
/// accessors use (<c>THSTensor_data</c> in libLibTorchSharp, which returns <c>at::Tensor::data_ptr()</c>).
/// </summary>
internal static partial class NativeTensorAccess
{
    [LibraryImport("LibTorchSharp")]
    private static partial IntPtr THSTensor_data(IntPtr handle);

    /// <summary>
    /// The address of the first element (device memory for CUDA tensors). The tensor must be contiguous: native code
    /// reads it as a dense row-major block. The pointer is valid only while the tensor is alive and unmodified in shape.
    /// </summary>
    public static IntPtr DataPointer(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (!tensor.is_contiguous())
            throw new ArgumentException(
                "Native code needs a contiguous tensor; call .contiguous() before passing it.", nameof(tensor));
        return StridedDataPointer(tensor);
    }

    /// <summary>
    /// The address of the first element of a strided view (its storage offset included), for kernels that take the
    /// strides as arguments and read the view in place.
    /// </summary>
    public static IntPtr StridedDataPointer(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        TorchRuntime.EnsureLoaded();
        return THSTensor_data(tensor.Handle);
    }
}
