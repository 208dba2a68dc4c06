using Microsoft.ML.Tokenizers;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Pretrained;

/// <summary>A batch of encoded texts, right-padded to the longest: row-major [BatchSize, Length] arrays.</summary>
public sealed record BertBatch(int BatchSize, int Length, long[] InputIds, long[] AttentionMask)
{
    /// <summary>Token ids and attention mask as int64 tensors [B, T] (the caller owns them).</summary>
    public (Tensor InputIds, Tensor AttentionMask) ToTensors(Device? device = null) =>
        (tensor(InputIds, new long[] { BatchSize, Length }, device: device),
         tensor(AttentionMask, new long[] { BatchSize, Length }, device: device));
}

/// <summary>
/// BERT WordPiece tokenization over a checkpoint's vocabulary (Microsoft.ML.Tokenizers' <see cref="BertTokenizer"/>):
/// [CLS] text [SEP], truncated to a maximum length, right-padded per batch. Lower-casing on by default (uncased models
/// such as MiniLM and ArcticXs).
/// </summary>
public sealed class BertWordPiece
{
    private BertWordPiece(BertTokenizer tokenizer) => Tokenizer = tokenizer;

    /// <summary>The underlying tokenizer.</summary>
    public BertTokenizer Tokenizer { get; }

    /// <summary>A tokenizer over the checkpoint's vocabulary.</summary>
    public static BertWordPiece Create(BertCheckpoint checkpoint, bool lowerCase = true)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        if (checkpoint.Vocabulary.Count == 0)
            throw new InvalidOperationException($"{checkpoint.Source}: the checkpoint has no vocabulary; load it with its vocab.txt.");
        using var vocab = checkpoint.OpenVocabulary();
        return Create(vocab, lowerCase);
    }

    /// <summary>A tokenizer over a vocab.txt stream.</summary>
    public static BertWordPiece Create(Stream vocabulary, bool lowerCase = true) =>
        new(BertTokenizer.Create(vocabulary, new BertOptions { LowerCaseBeforeTokenization = lowerCase }));

    /// <summary>Encodes texts as [CLS] tokens [SEP], each at most <paramref name="maxLength"/> tokens (specials included).</summary>
    public BertBatch Encode(IReadOnlyList<string> texts, int maxLength = 128)
    {
        ArgumentNullException.ThrowIfNull(texts);
        if (maxLength < 2) throw new ArgumentOutOfRangeException(nameof(maxLength), maxLength, "maxLength must leave room for [CLS] and [SEP] (≥ 2).");
        var rows = new List<int[]>(texts.Count);
        foreach (var text in texts)
        {
            var ids = Tokenizer.EncodeToIds(text ?? "", maxLength - 2, addSpecialTokens: false, out _, out _);
            var row = new int[ids.Count + 2];
            row[0] = Tokenizer.ClassificationTokenId;
            for (int i = 0; i < ids.Count; i++) row[i + 1] = ids[i];
            row[^1] = Tokenizer.SeparatorTokenId;
            rows.Add(row);
        }
        int length = rows.Count == 0 ? 2 : rows.Max(r => r.Length);
        var inputIds = new long[rows.Count * length];
        var mask = new long[rows.Count * length];
        Array.Fill(inputIds, Tokenizer.PaddingTokenId);
        for (int b = 0; b < rows.Count; b++)
        {
            for (int i = 0; i < rows[b].Length; i++)
            {
                inputIds[b * length + i] = rows[b][i];
                mask[b * length + i] = 1;
            }
        }
        return new BertBatch(rows.Count, length, inputIds, mask);
    }
}
