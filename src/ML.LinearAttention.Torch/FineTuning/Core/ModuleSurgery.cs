using System.Reflection;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.FineTuning;

/// <summary>
/// Swaps one submodule of a TorchSharp module tree for another. TorchSharp modules call their children through C#
/// fields, so a swap must replace both the registered child and the field that holds it; it is possible only when the
/// field's declared type accepts the replacement (e.g. <c>nn.Module&lt;Tensor, Tensor&gt;</c>, not the sealed
/// <c>Linear</c>).
/// </summary>
public static class ModuleSurgery
{
    /// <summary>The module named <paramref name="fullName"/> (dotted, as in named_modules) under <paramref name="root"/>.</summary>
    public static nn.Module Find(nn.Module root, string fullName)
    {
        foreach (var (name, module) in root.named_modules())
            if (name == fullName) return module;
        throw new ArgumentException($"The model has no submodule named '{fullName}'.", nameof(fullName));
    }

    /// <summary>The parent of <paramref name="fullName"/> and the child's own name.</summary>
    public static (nn.Module Parent, string Child) Parent(nn.Module root, string fullName)
    {
        int dot = fullName.LastIndexOf('.');
        return dot < 0 ? (root, fullName) : (Find(root, fullName[..dot]), fullName[(dot + 1)..]);
    }

    /// <summary>True when the field holding <paramref name="fullName"/> can hold a <paramref name="replacementType"/>.</summary>
    public static bool CanReplace(nn.Module root, string fullName, Type replacementType)
    {
        var (parent, child) = Parent(root, fullName);
        var field = HoldingField(parent, Find(root, fullName), child);
        return field is not null && field.FieldType.IsAssignableFrom(replacementType);
    }

    /// <summary>
    /// Puts <paramref name="replacement"/> where <paramref name="fullName"/> was (registered child and field).
    /// The old module is not disposed: a wrapper may own its parameters.
    /// </summary>
    public static void Replace(nn.Module root, string fullName, nn.Module replacement)
    {
        ArgumentNullException.ThrowIfNull(replacement);
        var (parent, child) = Parent(root, fullName);
        var old = Find(root, fullName);
        var field = HoldingField(parent, old, child)
            ?? throw new InvalidOperationException($"'{fullName}' is not held by a field of {parent.GetType().Name}, so it cannot be swapped.");
        if (!field.FieldType.IsAssignableFrom(replacement.GetType()))
            throw new InvalidOperationException($"'{fullName}' is held by the field {parent.GetType().Name}.{field.Name} of type {field.FieldType.Name}, " +
                                                $"which cannot hold a {replacement.GetType().Name}. Declare the field as nn.Module<Tensor, Tensor> to make it adaptable.");
        field.SetValue(parent, replacement);
        parent.register_module(child, null!); // removes the old registration
        parent.register_module(child, replacement);
    }

    /// <summary>Registers <paramref name="module"/> (or removes the child when null) under <paramref name="name"/> of <paramref name="parent"/>.</summary>
    public static void SetChild(nn.Module parent, string name, nn.Module? module)
    {
        parent.register_module(name, null!);
        if (module is not null) parent.register_module(name, module);
    }

    private static FieldInfo? HoldingField(nn.Module parent, nn.Module child, string childName)
    {
        FieldInfo? byValue = null;
        for (var type = parent.GetType(); type is not null && type != typeof(nn.Module); type = type.BaseType)
        {
            foreach (var f in type.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly))
            {
                if (!ReferenceEquals(f.GetValue(parent), child)) continue;
                if (f.Name == childName) return f;
                byValue ??= f;
            }
        }
        return byValue;
    }
}
