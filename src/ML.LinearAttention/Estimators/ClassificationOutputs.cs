using Microsoft.ML.Data;

namespace Microsoft.ML.LinearAttention.Estimators;

/// <summary>The Score (class probabilities) and PredictedLabel (arg-max key) getters shared by every classifier.</summary>
internal static class ClassificationOutputs
{
    /// <summary>Output 0 = Score as vector of Single; output 1 = PredictedLabel as a 1-based UInt32 key.</summary>
    public static ValueGetter<TValue> Getter<TValue>(int outputIndex, Func<float[]> current, string scoreColumn, string predictedLabelColumn)
    {
        if (outputIndex == 0)
        {
            if (typeof(TValue) != typeof(VBuffer<float>))
                throw new InvalidOperationException($"Column '{scoreColumn}' is a vector of Single, not {typeof(TValue).Name}.");
            ValueGetter<VBuffer<float>> g = (ref VBuffer<float> dst) =>
            {
                var s = current();
                var editor = VBufferEditor.Create(ref dst, s.Length);
                s.AsSpan().CopyTo(editor.Values);
                dst = editor.Commit();
            };
            return (ValueGetter<TValue>)(Delegate)g;
        }
        if (typeof(TValue) != typeof(uint))
            throw new InvalidOperationException($"Column '{predictedLabelColumn}' is a key of UInt32, not {typeof(TValue).Name}.");
        ValueGetter<uint> p = (ref uint dst) =>
        {
            var s = current();
            int best = 0;
            for (int i = 1; i < s.Length; i++) if (s[i] > s[best]) best = i;
            dst = (uint)best + 1;
        };
        return (ValueGetter<TValue>)(Delegate)p;
    }
}
