namespace Microsoft.ML.LinearAttention.Runtime;

/// <summary>bf16 as raw bits: the upper half of a float32.</summary>
internal static class BFloat16Bits
{
    /// <summary>Round to nearest even on the upper 16 bits of the float32, as libtorch converts (NaN kept as a quiet NaN).</summary>
    public static ushort FromSingle(float x)
    {
        uint bits = BitConverter.SingleToUInt32Bits(x);
        if (float.IsNaN(x)) return (ushort)((bits >> 16) | 0x40);
        return (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    }
}
