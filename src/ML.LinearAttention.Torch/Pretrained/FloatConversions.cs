using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace Microsoft.ML.LinearAttention.Pretrained;

/// <summary>Little-endian raw weight bytes → float32 (ONNX raw_data and safetensors are little-endian by specification).</summary>
internal static class FloatConversions
{
    public static float[] FromF32(ReadOnlySpan<byte> raw)
    {
        CheckMultiple(raw, 4, "float32");
        if (BitConverter.IsLittleEndian) return MemoryMarshal.Cast<byte, float>(raw).ToArray();
        var result = new float[raw.Length / 4];
        for (int i = 0; i < result.Length; i++) result[i] = BinaryPrimitives.ReadSingleLittleEndian(raw.Slice(4 * i));
        return result;
    }

    public static float[] FromF64(ReadOnlySpan<byte> raw)
    {
        CheckMultiple(raw, 8, "float64");
        var result = new float[raw.Length / 8];
        for (int i = 0; i < result.Length; i++) result[i] = (float)BinaryPrimitives.ReadDoubleLittleEndian(raw.Slice(8 * i));
        return result;
    }

    public static float[] FromF16(ReadOnlySpan<byte> raw)
    {
        CheckMultiple(raw, 2, "float16");
        var result = new float[raw.Length / 2];
        for (int i = 0; i < result.Length; i++) result[i] = (float)BinaryPrimitives.ReadHalfLittleEndian(raw.Slice(2 * i));
        return result;
    }

    /// <summary>bfloat16 is the upper half of a float32: shift its 16 bits into place.</summary>
    public static float[] FromBF16(ReadOnlySpan<byte> raw)
    {
        CheckMultiple(raw, 2, "bfloat16");
        var result = new float[raw.Length / 2];
        for (int i = 0; i < result.Length; i++)
            result[i] = BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(raw.Slice(2 * i)) << 16);
        return result;
    }

    private static void CheckMultiple(ReadOnlySpan<byte> raw, int size, string type)
    {
        if (raw.Length % size != 0)
            throw new InvalidDataException($"{raw.Length} bytes of {type} data is not a multiple of {size} bytes: the weight data is corrupt.");
    }
}
