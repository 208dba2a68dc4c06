using System.Reflection;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.LinearAttention.Runtime;

/// <summary>
/// The ONE place that touches ML.NET internals, by reflection, so that a third-party transformer behaves like ML.NET's
/// own: catalog environments, the device/seed/cancel flags of an environment, <see cref="SchemaShape.Column"/>
/// construction, and <c>mlContext.Model.Save/Load</c> (ModelSaveContext members, VersionInfo, ModelLoadContext and a
/// loader registered at run time in the <see cref="ComponentCatalog"/>). Pinned to Microsoft.ML 6.0.x by
/// <c>MLNetBridgeTests</c>; every member fails with a message naming the ML.NET member it could not find.
/// </summary>
internal static class MLNetBridge
{
    private const BindingFlags Any = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static;
    private static readonly Assembly Core = typeof(ModelSaveContext).Assembly;           // Microsoft.ML.Core

    /// <summary>The Microsoft.ML version this bridge was written and tested against.</summary>
    public const string PinnedMLNetVersion = "6.0";

    /// <summary>The product version of the loaded Microsoft.ML (its assembly version is always 1.0.0.0).</summary>
    public static string LoadedMLNetVersion
        => (typeof(MLContext).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown").Split('+')[0];

    private static Exception Broken(string what)
        => new InvalidOperationException($"ML.LinearAttention cannot reach ML.NET's internal '{what}' (Microsoft.ML {LoadedMLNetVersion}). " +
                                         $"This build supports Microsoft.ML {PinnedMLNetVersion}.x; use that version or a matching ML.LinearAttention.");

    private static Type CoreType(string fullName) => Core.GetType(fullName) ?? throw Broken(fullName);

    // ---- environments -------------------------------------------------------------------------------------------

    /// <summary>The environment behind any ML.NET catalog (TransformsCatalog, *.Trainers, ...).</summary>
    public static IHostEnvironment GetEnvironment(object catalog)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        var iface = catalog.GetType().GetInterfaces().FirstOrDefault(i => i.Name == "IInternalCatalog") ?? throw Broken("IInternalCatalog");
        var prop = iface.GetProperty("Environment", Any) ?? throw Broken("IInternalCatalog.Environment");
        return (IHostEnvironment)(prop.GetValue(catalog) ?? throw Broken("IInternalCatalog.Environment (null)"));
    }

    private static T? EnvProperty<T>(IHostEnvironment env, string name, T? fallback)
    {
        var p = env.GetType().GetProperty(name, BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance);
        return p is null ? fallback : (T?)p.GetValue(env);
    }

    /// <summary>MLContext.GpuDeviceId of the environment (null = CPU).</summary>
    public static int? GpuDeviceId(IHostEnvironment env) => EnvProperty<int?>(env, "GpuDeviceId", null);
    /// <summary>MLContext.FallbackToCpu of the environment.</summary>
    public static bool FallbackToCpu(IHostEnvironment env) => EnvProperty<bool>(env, "FallbackToCpu", true);
    /// <summary>The seed given to <c>new MLContext(seed)</c>, if any.</summary>
    public static int? Seed(IHostEnvironment env) => EnvProperty<int?>(env, "Seed", null);
    /// <summary>True once MLContext's CancelExecution (used by AutoML) has flagged this environment or host.</summary>
    public static bool IsCanceled(IHostEnvironment env) => EnvProperty<bool>(env, "IsCanceled", false);

    // ---- schema shapes ------------------------------------------------------------------------------------------

    private static readonly Lazy<ConstructorInfo> ColumnCtor = new(() =>
        typeof(SchemaShape.Column).GetConstructor(BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public, null,
            new[] { typeof(string), typeof(SchemaShape.Column.VectorKind), typeof(DataViewType), typeof(bool), typeof(SchemaShape) }, null)
        ?? throw Broken("SchemaShape.Column(string, VectorKind, DataViewType, bool, SchemaShape)"));

    /// <summary>A <see cref="SchemaShape.Column"/> (its constructor is internal).</summary>
    public static SchemaShape.Column Column(string name, SchemaShape.Column.VectorKind kind, DataViewType itemType, bool isKey, SchemaShape? annotations = null)
        => (SchemaShape.Column)ColumnCtor.Value.Invoke(new object?[] { name, kind, itemType, isKey, annotations });

    /// <summary>The shape of a schema (SchemaShape.Create is internal): what estimator.GetOutputSchema takes.</summary>
    public static SchemaShape ShapeOf(DataViewSchema schema)
    {
        var create = typeof(SchemaShape).GetMethod("Create", BindingFlags.Static | BindingFlags.NonPublic | BindingFlags.Public, null, new[] { typeof(DataViewSchema) }, null)
                     ?? throw Broken("SchemaShape.Create(DataViewSchema)");
        return (SchemaShape)InvokeUnwrapped(create, null, new object[] { schema })!;
    }

    // ---- save ---------------------------------------------------------------------------------------------------

    /// <summary>An instance of ML.NET's internal VersionInfo struct.</summary>
    public static object VersionInfo(string modelSignature, uint verWrittenCur, uint verReadableCur, uint verWeCanReadBack, string loaderAssemblyName, string loaderSignature)
    {
        if (modelSignature.Length != 8) throw new ArgumentException("An ML.NET model signature has exactly 8 characters.", nameof(modelSignature));
        if (loaderSignature.Length > 24) throw new ArgumentException("An ML.NET loader signature has at most 24 characters.", nameof(loaderSignature));
        var type = CoreType("Microsoft.ML.VersionInfo");
        var ctor = type.GetConstructor(Any, null, new[] { typeof(string), typeof(uint), typeof(uint), typeof(uint), typeof(string), typeof(string), typeof(string) }, null)
                   ?? throw Broken("VersionInfo(string, uint, uint, uint, string, string, string)");
        return ctor.Invoke(new object?[] { modelSignature, verWrittenCur, verReadableCur, verWeCanReadBack, loaderAssemblyName, loaderSignature, null });
    }

    /// <summary>
    /// Writes a model the way ML.NET's own transformers do: CheckAtModel, SetVersionInfo, the main stream through
    /// <paramref name="main"/>, then each named binary entry (weights) through SaveBinaryStream.
    /// </summary>
    public static void Save(ModelSaveContext ctx, object versionInfo, Action<BinaryWriter> main, params (string Name, Action<BinaryWriter> Write)[] entries)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        var t = typeof(ModelSaveContext);
        (t.GetMethod("CheckAtModel", Any, Type.EmptyTypes) ?? throw Broken("ModelSaveContext.CheckAtModel()")).Invoke(ctx, null);
        (t.GetMethod("SetVersionInfo", Any) ?? throw Broken("ModelSaveContext.SetVersionInfo")).Invoke(ctx, new[] { versionInfo });
        var writer = (BinaryWriter)((t.GetField("Writer", Any) ?? throw Broken("ModelSaveContext.Writer")).GetValue(ctx) ?? throw Broken("ModelSaveContext.Writer (null)"));
        main(writer);
        var saveBinary = t.GetMethod("SaveBinaryStream", Any) ?? throw Broken("ModelSaveContext.SaveBinaryStream");
        foreach (var (name, write) in entries)
            InvokeUnwrapped(saveBinary, ctx, new object[] { name, write });
    }

    // ---- load ---------------------------------------------------------------------------------------------------

    /// <summary>Checks the header of a ModelLoadContext against <paramref name="versionInfo"/> and returns its main reader.</summary>
    public static BinaryReader BeginLoad(object ctx, object versionInfo)
    {
        var t = ctx.GetType();
        var check = t.GetMethod("CheckAtModel", Any, new[] { versionInfo.GetType() }) ?? throw Broken("ModelLoadContext.CheckAtModel(VersionInfo)");
        InvokeUnwrapped(check, ctx, new[] { versionInfo });
        return (BinaryReader)((t.GetField("Reader", Any) ?? throw Broken("ModelLoadContext.Reader")).GetValue(ctx) ?? throw Broken("ModelLoadContext.Reader (null)"));
    }

    /// <summary>The (written, readable) format versions recorded in the header of the component a ModelLoadContext is at.</summary>
    public static (uint Written, uint Readable) ModelVersions(object ctx)
    {
        var header = (ctx.GetType().GetField("Header", Any) ?? throw Broken("ModelLoadContext.Header")).GetValue(ctx) ?? throw Broken("ModelLoadContext.Header (null)");
        var h = header.GetType();
        var written = (h.GetField("ModelVerWritten", Any) ?? throw Broken("ModelHeader.ModelVerWritten")).GetValue(header)!;
        var readable = (h.GetField("ModelVerReadable", Any) ?? throw Broken("ModelHeader.ModelVerReadable")).GetValue(header)!;
        return ((uint)written, (uint)readable);
    }

    /// <summary>Reads a named binary entry written by <see cref="Save"/>; false when the entry is missing.</summary>
    public static bool TryLoadBinaryStream(object ctx, string name, Action<BinaryReader> read)
    {
        var m = ctx.GetType().GetMethod("TryLoadBinaryStream", Any) ?? throw Broken("ModelLoadContext.TryLoadBinaryStream");
        return (bool)InvokeUnwrapped(m, ctx, new object[] { name, read })!;
    }

    private static readonly object RegisterGate = new();

    /// <summary>
    /// Registers a model loader in <paramref name="catalog"/>: ML.NET will call <paramref name="create"/>
    /// (a public static method taking (IHostEnvironment, object ctx) and returning <paramref name="instanceType"/>)
    /// for models saved with <paramref name="loaderSignature"/>. Idempotent per catalog.
    /// </summary>
    public static void RegisterLoader(ComponentCatalog catalog, Type instanceType, string loaderSignature, string userName, MethodInfo create)
    {
        lock (RegisterGate)
        {
            if (FindLoader(catalog, loaderSignature) is not null) return;

            var attrType = CoreType("Microsoft.ML.LoadableClassAttribute");
            var attrCtor = attrType.GetConstructor(Any, null, new[] { typeof(Type), typeof(Type), typeof(Type), typeof(Type), typeof(string), typeof(string[]) }, null)
                           ?? throw Broken("LoadableClassAttribute(Type, Type, Type, Type, string, string[])");
            var attr = attrCtor.Invoke(new object?[] { instanceType, instanceType, null, CoreType("Microsoft.ML.SignatureLoadModel"), userName, new[] { loaderSignature } });

            var infoType = typeof(ComponentCatalog).GetNestedType("LoadableClassInfo", Any) ?? throw Broken("ComponentCatalog.LoadableClassInfo");
            var infoCtor = infoType.GetConstructors(Any).FirstOrDefault(c => c.GetParameters().Length == 5) ?? throw Broken("LoadableClassInfo(attr, getter, ctor, create, requireEnvironment)");
            var info = infoCtor.Invoke(new object?[] { attr, null, null, create, true });

            var add = typeof(ComponentCatalog).GetMethod("AddClass", Any) ?? throw Broken("ComponentCatalog.AddClass");
            InvokeUnwrapped(add, catalog, new[] { info, new[] { loaderSignature }, (object)true });
        }
    }

    /// <summary>The catalog's LoadableClassInfo of the model loader registered under <paramref name="loaderSignature"/>, or null.</summary>
    private static object? FindLoader(ComponentCatalog catalog, string loaderSignature)
    {
        var find = typeof(ComponentCatalog).GetMethod("GetLoadableClassInfo", Any, new[] { typeof(string), typeof(Type) }) ?? throw Broken("ComponentCatalog.GetLoadableClassInfo(string, Type)");
        return find.Invoke(catalog, new object[] { loaderSignature, CoreType("Microsoft.ML.SignatureLoadModel") });
    }

    /// <summary>
    /// <paramref name="method"/> as a MethodInfo whose Invoke lets the method's own exception through instead of wrapping it in
    /// a TargetInvocationException: ML.NET's ComponentCatalog calls loaders through MethodInfo.Invoke, so without this the
    /// caller of <c>mlContext.Model.Load</c> gets "Exception has been thrown by the target of an invocation".
    /// </summary>
    public static MethodInfo Unwrapping(MethodInfo method)
        => method as UnwrappingMethod ?? new UnwrappingMethod(method ?? throw new ArgumentNullException(nameof(method)));

    /// <summary>
    /// Makes the loader of ML.NET's TransformerChain (which holds every pipeline's transformers) rethrow its components'
    /// errors unwrapped too, so a model saved as a chain surfaces our loader's message. Idempotent.
    /// </summary>
    public static void UnwrapChainLoader(ComponentCatalog catalog)
    {
        lock (RegisterGate)
        {
            // ML.NET registers the chain's assembly only when a load reaches it; registering it now (public, idempotent)
            // lets the chain's loader be found here first.
            catalog.RegisterAssembly(typeof(TransformerChain<>).Assembly);
            var info = FindLoader(catalog, "TransformerChain") ?? throw Broken("the TransformerChain loader in the ComponentCatalog");
            var field = info.GetType().GetField("<CreateMethod>k__BackingField", Any) ?? throw Broken("LoadableClassInfo.CreateMethod");
            if (field.GetValue(info) is MethodInfo create and not UnwrappingMethod) field.SetValue(info, new UnwrappingMethod(create));
        }
    }

    private sealed class UnwrappingMethod(MethodInfo inner) : MethodInfo
    {
        public override object? Invoke(object? obj, BindingFlags invokeAttr, Binder? binder, object?[]? parameters, System.Globalization.CultureInfo? culture)
            => inner.Invoke(obj, invokeAttr | BindingFlags.DoNotWrapExceptions, binder, parameters, culture);

        public override MethodAttributes Attributes => inner.Attributes;
        public override RuntimeMethodHandle MethodHandle => inner.MethodHandle;
        public override Type? DeclaringType => inner.DeclaringType;
        public override string Name => inner.Name;
        public override Type? ReflectedType => inner.ReflectedType;
        public override Type ReturnType => inner.ReturnType;
        public override ParameterInfo ReturnParameter => inner.ReturnParameter;
        public override ICustomAttributeProvider ReturnTypeCustomAttributes => inner.ReturnTypeCustomAttributes;
        public override MethodInfo GetBaseDefinition() => inner.GetBaseDefinition();
        public override object[] GetCustomAttributes(bool inherit) => inner.GetCustomAttributes(inherit);
        public override object[] GetCustomAttributes(Type attributeType, bool inherit) => inner.GetCustomAttributes(attributeType, inherit);
        public override bool IsDefined(Type attributeType, bool inherit) => inner.IsDefined(attributeType, inherit);
        public override MethodImplAttributes GetMethodImplementationFlags() => inner.GetMethodImplementationFlags();
        public override ParameterInfo[] GetParameters() => inner.GetParameters();
        public override string ToString() => inner.ToString() ?? Name;
    }

    private static object? InvokeUnwrapped(MethodInfo m, object? target, object?[] args)
    {
        try { return m.Invoke(target, args); }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerException).Throw();
            throw;
        }
    }
}
