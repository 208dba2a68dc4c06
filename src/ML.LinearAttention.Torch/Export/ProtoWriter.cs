using System.Text;

namespace Microsoft.ML.LinearAttention.Export;

/// <summary>
/// A minimal protobuf wire-format writer (varints, fixed32, length-delimited fields): enough to write an ONNX
/// ModelProto without Google.Protobuf, the counterpart of the importers' ProtoReader. Nested messages are written into a
/// child writer first, so their length is known when the parent writes them.
/// </summary>
internal sealed class ProtoWriter
{
    private readonly MemoryStream _buffer = new();

    public long Length => _buffer.Length;

    public void Varint(int field, long value)
    {
        Key(field, 0);
        RawVarint(unchecked((ulong)value));
    }

    public void Float(int field, float value)
    {
        Key(field, 5);
        Span<byte> b = stackalloc byte[4];
        BitConverter.TryWriteBytes(b, value);
        if (!BitConverter.IsLittleEndian) b.Reverse();
        _buffer.Write(b);
    }

    public void String(int field, string value) => Bytes(field, Encoding.UTF8.GetBytes(value));

    public void Bytes(int field, ReadOnlySpan<byte> value)
    {
        Key(field, 2);
        RawVarint((ulong)value.Length);
        _buffer.Write(value);
    }

    public void Message(int field, ProtoWriter child)
    {
        Key(field, 2);
        RawVarint((ulong)child._buffer.Length);
        child._buffer.Position = 0;
        child._buffer.CopyTo(_buffer);
    }

    /// <summary>A packed repeated int64 field (proto3's default for repeated scalars).</summary>
    public void PackedInt64(int field, IEnumerable<long> values)
    {
        var packed = new ProtoWriter();
        foreach (var v in values) packed.RawVarint(unchecked((ulong)v));
        Key(field, 2);
        RawVarint((ulong)packed._buffer.Length);
        packed._buffer.Position = 0;
        packed._buffer.CopyTo(_buffer);
    }

    public void WriteTo(Stream stream)
    {
        _buffer.Position = 0;
        _buffer.CopyTo(stream);
    }

    private void Key(int field, int wireType) => RawVarint((ulong)((field << 3) | wireType));

    private void RawVarint(ulong value)
    {
        while (value >= 0x80)
        {
            _buffer.WriteByte((byte)(value | 0x80));
            value >>= 7;
        }
        _buffer.WriteByte((byte)value);
    }
}
