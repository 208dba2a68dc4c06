using System.Globalization;

namespace Microsoft.ML.LinearAttention.Samples.Commands;

/// <summary>
/// `--name value` and `--flag` options of one command. Every option must be known to the command (a typo is an error
/// listing the options), and values are parsed with the invariant culture.
/// </summary>
public sealed class CommandLine
{
    private readonly Dictionary<string, string?> _values = new(StringComparer.Ordinal);
    private readonly HashSet<string> _read = new(StringComparer.Ordinal);
    private readonly string _command;

    /// <param name="command">Command name (for messages).</param>
    /// <param name="args">Arguments after the command name.</param>
    /// <param name="flags">Options that take no value.</param>
    public CommandLine(string command, IReadOnlyList<string> args, params string[] flags)
    {
        _command = command;
        for (int i = 0; i < args.Count; i++)
        {
            var a = args[i];
            if (!a.StartsWith("--", StringComparison.Ordinal) || a.Length < 3)
                throw new ArgumentException($"'{a}' is not an option of '{command}' (options start with --; see --help).");
            var name = a[2..];
            string? value = null;
            int eq = name.IndexOf('=');
            if (eq > 0) { value = name[(eq + 1)..]; name = name[..eq]; }
            else if (!flags.Contains(name))
            {
                if (i + 1 >= args.Count) throw new ArgumentException($"Option --{name} of '{command}' needs a value.");
                value = args[++i];
            }
            if (!_values.TryAdd(name, value)) throw new ArgumentException($"Option --{name} is given twice.");
        }
    }

    /// <summary>A string option, or <paramref name="fallback"/>.</summary>
    public string? String(string name, string? fallback = null)
    {
        _read.Add(name);
        return _values.TryGetValue(name, out var v) ? v : fallback;
    }

    /// <summary>A required string option.</summary>
    public string Required(string name, string what)
        => String(name) ?? throw new ArgumentException($"'{_command}' needs --{name} ({what}).");

    /// <summary>A comma-separated list (empty when absent).</summary>
    public string[] List(string name)
        => String(name)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? Array.Empty<string>();

    /// <summary>True when the flag is present.</summary>
    public bool Flag(string name)
    {
        _read.Add(name);
        return _values.ContainsKey(name);
    }

    /// <summary>An integer option.</summary>
    public int Int(string name, int fallback) => Number(name, fallback, s => int.Parse(s, NumberStyles.Integer, CultureInfo.InvariantCulture));

    /// <summary>A floating-point option.</summary>
    public double Double(string name, double fallback) => Number(name, fallback, s => double.Parse(s, NumberStyles.Float, CultureInfo.InvariantCulture));

    private T Number<T>(string name, T fallback, Func<string, T> parse)
    {
        var s = String(name);
        if (s is null) return fallback;
        try { return parse(s); }
        catch (FormatException) { throw new ArgumentException($"--{name} {s}: not a number."); }
        catch (OverflowException) { throw new ArgumentException($"--{name} {s}: out of range."); }
    }

    /// <summary>Throws for every option the command did not read (typos).</summary>
    public void RejectUnknown()
    {
        var unknown = _values.Keys.Where(k => !_read.Contains(k)).ToList();
        if (unknown.Count > 0)
            throw new ArgumentException($"Unknown option(s) for '{_command}': {string.Join(", ", unknown.Select(u => "--" + u))}. Known: {string.Join(", ", _read.OrderBy(r => r).Select(r => "--" + r))}.");
    }
}
