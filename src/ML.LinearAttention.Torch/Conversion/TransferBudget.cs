namespace Microsoft.ML.LinearAttention.Conversion;

/// <summary>
/// How much attention transfer a conversion gets: optimizer steps, rows per batch and how many generic texts
/// (<see cref="GenericCorpus"/>) join the user's. "Auto" follows the data, with floors: a few thousand short rows must
/// not mean a few hundred steps, which is what lost accuracy on small data (issue 26: 100–200 steps kept 94.6–97.3 % of
/// the softmax fine-tune, 1,000 steps on 16,000 rows kept 99.5 %).
/// </summary>
/// <param name="Steps">Optimizer steps of stage 1.</param>
/// <param name="BatchSize">Rows per stage-1 batch.</param>
/// <param name="UserTexts">Texts of the user's data used.</param>
/// <param name="GenericTexts">Generic texts added.</param>
/// <param name="Reason">How the numbers were chosen, for the log.</param>
public sealed record TransferBudget(int Steps, int BatchSize, int UserTexts, int GenericTexts, string Reason)
{
    /// <summary>Fewest steps "auto" gives: the step count at which the transfer reached 99 % of softmax in issue 26.</summary>
    public const int MinimumAutoSteps = 1000;
    /// <summary>Most steps "auto" gives (large data sets are sampled, not swept: the feature maps converge long before).</summary>
    public const int MaximumAutoSteps = 4000;
    /// <summary>Real tokens per batch "auto" aims at (short sentences get more rows a batch, long documents fewer).</summary>
    public const int AutoTokensPerBatch = 1024;
    /// <summary>Passes over the distinct transfer texts "auto" plans for: each text is seen about this often.</summary>
    public const int AutoPassesOverTexts = 2;
    /// <summary>Default of the fewest distinct transfer texts before generic text tops them up.</summary>
    public const int DefaultMinimumTexts = 4000;

    /// <summary>
    /// The budget for <paramref name="userTexts"/> texts of <paramref name="meanTokens"/> tokens on average.
    /// <paramref name="steps"/> / <paramref name="batchSize"/>: null = auto. Auto batch: <see cref="AutoTokensPerBatch"/>
    /// tokens, 8 to 64 rows. Auto steps: <see cref="AutoPassesOverTexts"/> passes over the distinct texts, at least
    /// <see cref="MinimumAutoSteps"/>, at most <see cref="MaximumAutoSteps"/>. Generic text is added where the steps would
    /// see each user text more than <see cref="AutoPassesOverTexts"/> times, up to <paramref name="minimumTexts"/>
    /// distinct texts in all (0 = never).
    /// </summary>
    public static TransferBudget Choose(int userTexts, double meanTokens, int? steps, int? batchSize, int minimumTexts)
    {
        if (userTexts < 0) throw new ArgumentOutOfRangeException(nameof(userTexts), userTexts, "The number of user texts cannot be negative.");
        if (steps < 0) throw new ArgumentOutOfRangeException(nameof(steps), steps, "TransferSteps must be null (auto), 0 (skip stage 1) or positive.");
        if (batchSize <= 0) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "TransferBatchSize must be null (auto) or positive.");
        if (minimumTexts < 0) throw new ArgumentOutOfRangeException(nameof(minimumTexts), minimumTexts, "MinimumTransferTexts must be 0 (no generic text) or positive.");
        double tokens = meanTokens > 0 ? meanTokens : 32;
        int batch = batchSize ?? Math.Clamp((int)Math.Round(AutoTokensPerBatch / tokens), 8, 64);
        var why = new List<string>
        {
            batchSize is null ? $"batch {batch} (auto: ~{AutoTokensPerBatch} tokens of {tokens:F0}-token texts)" : $"batch {batch} (TransferBatchSize)",
        };
        int AutoSteps(long texts) => (int)Math.Clamp(AutoPassesOverTexts * texts / batch, MinimumAutoSteps, MaximumAutoSteps);
        int chosen = steps ?? AutoSteps(userTexts);
        // Generic text only where the steps would cycle the user's texts more than AutoPassesOverTexts times, and only
        // up to minimumTexts distinct texts in all.
        long wanted = Math.Min(minimumTexts, (long)chosen * batch / AutoPassesOverTexts);
        int generic = (int)Math.Max(0, wanted - userTexts);
        if (steps is null)
        {
            chosen = AutoSteps(userTexts + (long)generic);
            why.Add($"{chosen} steps (auto: {AutoPassesOverTexts} passes over {userTexts + generic:N0} texts, {MinimumAutoSteps:N0} to {MaximumAutoSteps:N0})");
        }
        else why.Add($"{chosen} steps (TransferSteps)");
        if (generic > 0) why.Add($"{generic:N0} generic texts join the user's {userTexts:N0} (MinimumTransferTexts {minimumTexts:N0}; the steps would otherwise cycle the user's texts more than {AutoPassesOverTexts} times)");
        return new TransferBudget(chosen, batch, userTexts, generic, string.Join("; ", why));
    }
}
