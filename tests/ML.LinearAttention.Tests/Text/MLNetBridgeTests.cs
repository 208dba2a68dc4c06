using System.Reflection;
using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Runtime;
using Microsoft.ML.Runtime;
using Microsoft.ML.SearchSpace;
using Xunit;
using Microsoft.ML.LinearAttention.Persistence;

namespace Microsoft.ML.LinearAttention.Tests.Text;

/// <summary>
/// Pins the reflection bridge to the Microsoft.ML version it was written for: when ML.NET is upgraded these tests say
/// which internal member moved, before any user sees a broken Save/Load.
/// </summary>
public sealed class MLNetBridgeTests
{
    [Fact]
    public void BridgeIsPinnedToMicrosoftML60()
    {
        var version = MLNetBridge.LoadedMLNetVersion;
        Assert.True(version.StartsWith(MLNetBridge.PinnedMLNetVersion + ".", StringComparison.Ordinal),
            $"MLNetBridge was verified against Microsoft.ML {MLNetBridge.PinnedMLNetVersion}.x but {version} is loaded; re-verify the bridge and update PinnedMLNetVersion.");
    }

    [Fact]
    public void EveryInternalMemberTheBridgeUsesIsReachable()
    {
        var ml = new MLContext(seed: 42) { GpuDeviceId = 3, FallbackToCpu = false };
        var env = MLNetBridge.GetEnvironment(ml.Transforms);
        Assert.Equal(3, MLNetBridge.GpuDeviceId(env));
        Assert.False(MLNetBridge.FallbackToCpu(env));
        Assert.Equal(42, MLNetBridge.Seed(env));
        Assert.False(MLNetBridge.IsCanceled(env));
        Assert.Same(env, MLNetBridge.GetEnvironment(ml.MulticlassClassification.Trainers));
        Assert.Same(env, MLNetBridge.GetEnvironment(ml.Regression.Trainers));

        var column = MLNetBridge.Column("X", SchemaShape.Column.VectorKind.Vector, NumberDataViewType.Single, false);
        Assert.Equal("X", column.Name);
        var shape = MLNetBridge.ShapeOf(ml.Data.LoadFromEnumerable(new[] { new SentimentRow() }).Schema);
        Assert.Contains(shape, c => c.Name == "Text");

        var version = MLNetBridge.VersionInfo("ABCDEFGH", 1, 1, 1, "asm", "sig");
        Assert.Equal("Microsoft.ML.VersionInfo", version.GetType().FullName);

        LinearAttentionModel.Register(ml);
        LinearAttentionModel.Register(ml); // idempotent
        var find = typeof(ComponentCatalog).GetMethod("GetLoadableClassInfo", BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public, null,
            new[] { typeof(string), typeof(Type) }, null)!;
        var sig = typeof(ModelSaveContext).Assembly.GetType("Microsoft.ML.SignatureLoadModel")!;
        var info = find.Invoke(ml.ComponentCatalog, new object[] { LinearAttentionTransformer.LoaderSignature, sig });
        Assert.NotNull(info);
        // LoadableClassInfo's constructor takes its arguments by position: the loader must land in CreateMethod, and the
        // chain's loader must be the unwrapping one.
        var createOf = (object i) => (MethodInfo)i.GetType().GetProperty("CreateMethod")!.GetValue(i)!;
        Assert.Equal(nameof(ModelLoader.Create), createOf(info!).Name);
        Assert.Equal(typeof(ModelLoader), createOf(info!).DeclaringType);
        Assert.Same(MLNetBridge.Unwrapping(createOf(info!)), createOf(info!));
        var chain = find.Invoke(ml.ComponentCatalog, new object[] { "TransformerChain", sig })!;
        Assert.Same(MLNetBridge.Unwrapping(createOf(chain)), createOf(chain));
    }

    [Fact]
    public void CancelExecutionOfTheContextIsSeenThroughTheBridge()
    {
        var ml = new MLContext(seed: 1);
        var env = MLNetBridge.GetEnvironment(ml.Transforms);
        typeof(MLContext).GetMethod("CancelExecution", BindingFlags.Instance | BindingFlags.NonPublic)!.Invoke(ml, null);
        Assert.True(MLNetBridge.IsCanceled(env));
    }

    [Fact]
    public void OptionsCarryASearchSpace()
    {
        var fields = typeof(TextClassificationOptions).GetFields();
        Assert.NotNull(fields.Single(f => f.Name == nameof(LinearAttentionOptions.LearningRate)).GetCustomAttribute<RangeAttribute>());
        Assert.NotNull(fields.Single(f => f.Name == nameof(LinearAttentionOptions.Attention)).GetCustomAttribute<ChoiceAttribute>());
        Assert.NotNull(fields.Single(f => f.Name == nameof(LinearAttentionOptions.MaxSequenceLength)).GetCustomAttribute<RangeAttribute>());
    }
}
