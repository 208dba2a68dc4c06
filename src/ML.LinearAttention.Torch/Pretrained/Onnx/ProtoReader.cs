namespace Microsoft.ML.LinearAttention.Pretrained.Onnx;

/// <summary>
/// A minimal protobuf wire-format reader over a byte range (varint, fixed32, fixed64, length-delimited): enough to walk
/// an ONNX ModelProto without Google.Protobuf. Unknown fields are skipped by wire type; groups (deprecated) are rejected.
/// </summary>
internal struct ProtoReader
{
    private readonly byte[] _buffer;
    private readonly int _end;
    private int _pos;

    public ProtoReader(byte[] buffer) : this(buffer, 0, buffer.Length) { }

    public ProtoReader(byte[] buffer, int start, int length)
    {
        if (start < 0 || length < 0 || start > buffer.Length - length)
            throw new InvalidDataException($"Protobuf message range [{start}, {start + (long)length}) lies outside the {buffer.Length}-byte buffer: the file is truncated or not protobuf.");
        _buffer = buffer;
        _pos = start;
        _end = start + length;
    }

    /// <summary>Reads the next field key; false at the end of the message.</summary>
    public bool Next(out int field, out int wireType)
    {
        if (_pos >= _end) { field = 0; wireType = 0; return false; }
        ulong key = ReadVarint();
        field = (int)(key >> 3);
        wireType = (int)(key & 7);
        if (field <= 0) throw new InvalidDataException($"Invalid protobuf field number {field} at byte {_pos}: the data is not a protobuf message.");
        return true;
    }

    public ulong ReadVarint()
    {
        ulong result = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            if (_pos >= _end) throw Truncated();
            byte b = _buffer[_pos++];
            result |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80) return result;
        }
        throw new InvalidDataException($"Malformed protobuf varint ending at byte {_pos}.");
    }

    public long ReadInt64() => (long)ReadVarint();

    public uint ReadFixed32()
    {
        if (_end - _pos < 4) throw Truncated();
        uint v = BitConverter.ToUInt32(_buffer, _pos);
        _pos += 4;
        return v;
    }

    public ulong ReadFixed64()
    {
        if (_end - _pos < 8) throw Truncated();
        ulong v = BitConverter.ToUInt64(_buffer, _pos);
        _pos += 8;
        return v;
    }

    public float ReadFloat() => BitConverter.Int32BitsToSingle((int)ReadFixed32());

    /// <summary>Reads a length-delimited field and returns its (start, length) inside the buffer.</summary>
    public (int Start, int Length) ReadSlice()
    {
        ulong len = ReadVarint();
        if (len > (ulong)(_end - _pos)) throw Truncated();
        int start = _pos;
        _pos += (int)len;
        return (start, (int)len);
    }

    public ProtoReader ReadMessage()
    {
        var (start, length) = ReadSlice();
        return new ProtoReader(_buffer, start, length);
    }

    public string ReadString()
    {
        var (start, length) = ReadSlice();
        return System.Text.Encoding.UTF8.GetString(_buffer, start, length);
    }

    public byte[] Buffer => _buffer;

    public void Skip(int wireType)
    {
        switch (wireType)
        {
            case 0: ReadVarint(); break;
            case 1: ReadFixed64(); break;
            case 2: ReadSlice(); break;
            case 5: ReadFixed32(); break;
            default: throw new InvalidDataException($"Unsupported protobuf wire type {wireType} at byte {_pos}: the data is not an ONNX model.");
        }
    }

    /// <summary>Reads a repeated int64 field given either packed (wire type 2) or one value at a time (wire type 0).</summary>
    public void ReadInt64s(int wireType, List<long> into)
    {
        if (wireType == 0) { into.Add(ReadInt64()); return; }
        var packed = ReadMessage();
        while (packed._pos < packed._end) into.Add(packed.ReadInt64());
    }

    /// <summary>Reads a repeated float field given either packed (wire type 2) or one value at a time (wire type 5).</summary>
    public void ReadFloats(int wireType, List<float> into)
    {
        if (wireType == 5) { into.Add(ReadFloat()); return; }
        var (start, length) = ReadSlice();
        if (length % 4 != 0) throw new InvalidDataException($"Packed float field of {length} bytes is not a multiple of 4.");
        for (int i = 0; i < length; i += 4) into.Add(BitConverter.ToSingle(_buffer, start + i));
    }

    /// <summary>Reads a repeated double field given either packed (wire type 2) or one value at a time (wire type 1).</summary>
    public void ReadDoubles(int wireType, List<double> into)
    {
        if (wireType == 1) { into.Add(BitConverter.Int64BitsToDouble((long)ReadFixed64())); return; }
        var (start, length) = ReadSlice();
        if (length % 8 != 0) throw new InvalidDataException($"Packed double field of {length} bytes is not a multiple of 8.");
        for (int i = 0; i < length; i += 8) into.Add(BitConverter.ToDouble(_buffer, start + i));
    }

    private InvalidDataException Truncated() =>
        new($"Protobuf message truncated at byte {_pos} (message ends at {_end}): the ONNX file is incomplete or corrupt.");
}
