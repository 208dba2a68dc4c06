namespace Microsoft.ML.LinearAttention.Attention;

/// <summary>Option checks shared by the mixers, with messages that name the option and the fix.</summary>
internal static class MixerChecks
{
    /// <summary>
    /// Width C·<paramref name="expand"/> of an expanded key/value space (RetNet, GLA, the delta-rule family); throws
    /// naming <paramref name="option"/> unless it is a positive whole multiple of the head count.
    /// </summary>
    internal static int ExpandedWidth(MixerConfig config, double expand, string option, string mechanism)
    {
        double w = config.ModelDim * expand;
        int rounded = (int)Math.Round(w);
        if (!(expand > 0) || Math.Abs(w - rounded) > 1e-9 || rounded == 0 || rounded % config.NumHeads != 0)
            throw new ArgumentException($"{mechanism}: {option} = {expand} gives width {w} for hidden size {config.ModelDim}, which must be a positive " +
                                        $"whole multiple of the {config.NumHeads} heads; choose {option} so that hidden size × {option} is a multiple of the head count.");
        return rounded;
    }

    /// <summary>Throws unless the chunk length of a chunkwise kernel is positive.</summary>
    internal static void ChunkSize(int chunkSize, string mechanism)
    {
        if (chunkSize <= 0)
            throw new ArgumentOutOfRangeException("options", chunkSize, $"{mechanism}: ChunkSize must be positive (64 is the default).");
    }
}
