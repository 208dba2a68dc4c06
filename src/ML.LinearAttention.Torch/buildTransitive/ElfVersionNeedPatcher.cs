// Compiled twice: by MSBuild's RoslynCodeTaskFactory (ML.LinearAttention.targets) as the build task that fixes
// TorchSharp's native library in a build/publish output folder, and by the test project (with
// ELF_PATCHER_NO_MSBUILD defined) to unit-test the byte-level logic. Keep it netstandard2.0-compatible.
using System;
#nullable enable
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;

namespace MLLinearAttention.Build
{
    /// <summary>Outcome of looking at one ELF file for a version need.</summary>
    public enum VersionNeedPatchResult
    {
        /// <summary>The file does not ask for the version at all.</summary>
        NotNeeded,
        /// <summary>The need was already weak; nothing was written (idempotent).</summary>
        AlreadyWeak,
        /// <summary>The VER_FLG_WEAK bit was set.</summary>
        Patched,
        /// <summary>Symbols other than the allowed markers bind to the version: weakening it would be unsafe.</summary>
        RefusedSymbolsUseIt,
    }

    /// <summary>
    /// Reads and edits the GNU symbol-versioning sections of a 64-bit little-endian ELF shared object.
    /// The only edit it makes is setting VER_FLG_WEAK (0x2) in <c>vna_flags</c> of one <c>.gnu.version_r</c>
    /// auxiliary entry, so a loader whose libstdc++ lacks that version warns instead of refusing the library.
    /// </summary>
    public static class ElfVersionNeedPatcher
    {
        public const ushort VerFlagWeak = 0x2;
        private const uint ShtDynsym = 11;
        private const uint ShtGnuVerdef = 0x6ffffffd;
        private const uint ShtGnuVerneed = 0x6ffffffe;
        private const uint ShtGnuVersym = 0x6fffffff;

        /// <summary>One auxiliary entry of .gnu.version_r: a version a file asks for from one library.</summary>
        public sealed class VersionNeed
        {
            public string File = "";
            public string Name = "";
            public ushort Flags;
            public ushort VersionIndex;
            /// <summary>Byte offset of <c>vna_flags</c> in the file.</summary>
            public long FlagsOffset;
            public bool IsWeak => (Flags & VerFlagWeak) != 0;
        }

        private sealed class Section
        {
            public uint Type;
            public long Offset;
            public long Size;
            public uint Link;
            public uint Info;
            public long EntrySize;
        }

        /// <summary>Every version need (library file, version name, flags) declared by the ELF image.</summary>
        public static List<VersionNeed> ReadVersionNeeds(byte[] elf)
        {
            var sections = ReadSections(elf);
            var result = new List<VersionNeed>();
            foreach (var s in sections.Where(s => s.Type == ShtGnuVerneed))
            {
                var strtab = sections[(int)s.Link];
                long entry = s.Offset;
                for (uint i = 0; i < s.Info; i++)
                {
                    ushort count = U16(elf, entry + 2);
                    string file = CString(elf, strtab.Offset + U32(elf, entry + 4));
                    long aux = entry + U32(elf, entry + 8);
                    for (int j = 0; j < count; j++)
                    {
                        result.Add(new VersionNeed
                        {
                            File = file,
                            Flags = U16(elf, aux + 4),
                            VersionIndex = U16(elf, aux + 6),
                            Name = CString(elf, strtab.Offset + U32(elf, aux + 8)),
                            FlagsOffset = aux + 4,
                        });
                        uint nextAux = U32(elf, aux + 12);
                        if (nextAux == 0) break;
                        aux += nextAux;
                    }
                    uint next = U32(elf, entry + 12);
                    if (next == 0) break;
                    entry += next;
                }
            }
            return result;
        }

        /// <summary>Every version a library defines (.gnu.version_d), e.g. GLIBCXX_3.4.30 for a libstdc++.</summary>
        public static HashSet<string> ReadVersionDefinitions(byte[] elf)
        {
            var sections = ReadSections(elf);
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var s in sections.Where(s => s.Type == ShtGnuVerdef))
            {
                var strtab = sections[(int)s.Link];
                long entry = s.Offset;
                for (uint i = 0; i < s.Info; i++)
                {
                    ushort count = U16(elf, entry + 6);
                    long aux = entry + U32(elf, entry + 12);
                    for (int j = 0; j < count; j++)
                    {
                        names.Add(CString(elf, strtab.Offset + U32(elf, aux)));
                        uint nextAux = U32(elf, aux + 4);
                        if (nextAux == 0) break;
                        aux += nextAux;
                    }
                    uint next = U32(elf, entry + 16);
                    if (next == 0) break;
                    entry += next;
                }
            }
            return names;
        }

        /// <summary>Names of the dynamic symbols bound to a version index (through .gnu.version).</summary>
        public static List<string> SymbolsBoundTo(byte[] elf, ushort versionIndex)
        {
            var sections = ReadSections(elf);
            var dynsym = sections.FirstOrDefault(s => s.Type == ShtDynsym);
            var versym = sections.FirstOrDefault(s => s.Type == ShtGnuVersym);
            var names = new List<string>();
            if (dynsym == null || versym == null) return names;
            var strtab = sections[(int)dynsym.Link];
            long entrySize = dynsym.EntrySize == 0 ? 24 : dynsym.EntrySize;
            long count = dynsym.Size / entrySize;
            for (long i = 0; i < count; i++)
            {
                ushort index = (ushort)(U16(elf, versym.Offset + 2 * i) & 0x7fff);
                if (index != versionIndex) continue;
                names.Add(CString(elf, strtab.Offset + U32(elf, dynsym.Offset + i * entrySize)));
            }
            return names;
        }

        /// <summary>
        /// Sets VER_FLG_WEAK on the need for <paramref name="versionName"/> in <paramref name="elf"/> (in memory),
        /// provided only symbols in <paramref name="allowedSymbols"/> bind to that version.
        /// </summary>
        public static VersionNeedPatchResult WeakenVersionNeed(byte[] elf, string versionName, ICollection<string> allowedSymbols,
            out List<string> blockingSymbols)
        {
            blockingSymbols = new List<string>();
            var needs = ReadVersionNeeds(elf).Where(n => n.Name == versionName).ToList();
            if (needs.Count == 0) return VersionNeedPatchResult.NotNeeded;
            if (needs.All(n => n.IsWeak)) return VersionNeedPatchResult.AlreadyWeak;
            foreach (var need in needs)
                blockingSymbols.AddRange(SymbolsBoundTo(elf, need.VersionIndex).Where(s => !allowedSymbols.Contains(s)));
            if (blockingSymbols.Count > 0) return VersionNeedPatchResult.RefusedSymbolsUseIt;
            foreach (var need in needs.Where(n => !n.IsWeak))
            {
                ushort flags = (ushort)(need.Flags | VerFlagWeak);
                elf[need.FlagsOffset] = (byte)(flags & 0xff);
                elf[need.FlagsOffset + 1] = (byte)(flags >> 8);
            }
            return VersionNeedPatchResult.Patched;
        }

        /// <summary>
        /// Patches a file in place (through a temporary file and a rename, so a hard link to the NuGet cache is never
        /// written through). Returns what was done.
        /// </summary>
        public static VersionNeedPatchResult WeakenVersionNeedInFile(string path, string versionName, ICollection<string> allowedSymbols,
            out List<string> blockingSymbols)
        {
            var bytes = File.ReadAllBytes(path);
            var result = WeakenVersionNeed(bytes, versionName, allowedSymbols, out blockingSymbols);
            if (result != VersionNeedPatchResult.Patched) return result;
            string temp = path + ".patching";
            File.WriteAllBytes(temp, bytes);
            File.Delete(path);
            File.Move(temp, path);
            return result;
        }

        /// <summary>The libstdc++ the dynamic loader would pick, from LD_LIBRARY_PATH then the usual system folders.</summary>
        public static string? FindSystemLibStdCxx(string? ldLibraryPath)
        {
            var folders = new List<string>();
            if (!string.IsNullOrEmpty(ldLibraryPath)) folders.AddRange(ldLibraryPath!.Split(':').Where(f => f.Length > 0));
            folders.AddRange(new[]
            {
                "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
                "/lib64", "/usr/lib64", "/lib", "/usr/lib",
            });
            foreach (var folder in folders)
            {
                var candidate = Path.Combine(folder, "libstdc++.so.6");
                if (File.Exists(candidate)) return candidate;
            }
            return null;
        }

        private static List<Section> ReadSections(byte[] elf)
        {
            if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
                throw new InvalidDataException("not an ELF file (bad magic)");
            if (elf[4] != 2 || elf[5] != 1)
                throw new InvalidDataException("only 64-bit little-endian ELF files are supported");
            long shoff = (long)U64(elf, 0x28);
            ushort shentsize = U16(elf, 0x3a);
            ushort shnum = U16(elf, 0x3c);
            if (shoff <= 0 || shentsize < 64 || shoff + (long)shentsize * shnum > elf.Length)
                throw new InvalidDataException("ELF section header table is missing or truncated");
            var sections = new List<Section>(shnum);
            for (int i = 0; i < shnum; i++)
            {
                long h = shoff + (long)i * shentsize;
                var s = new Section
                {
                    Type = U32(elf, h + 4),
                    Offset = (long)U64(elf, h + 24),
                    Size = (long)U64(elf, h + 32),
                    Link = U32(elf, h + 40),
                    Info = U32(elf, h + 44),
                    EntrySize = (long)U64(elf, h + 56),
                };
                if (s.Type != 8 /* SHT_NOBITS */ && s.Offset + s.Size > elf.Length)
                    throw new InvalidDataException($"ELF section {i} lies outside the file");
                sections.Add(s);
            }
            return sections;
        }

        private static ushort U16(byte[] b, long o) => (ushort)(b[o] | (b[o + 1] << 8));
        private static uint U32(byte[] b, long o) => (uint)(b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24));
        private static ulong U64(byte[] b, long o) => U32(b, o) | ((ulong)U32(b, o + 4) << 32);

        private static string CString(byte[] b, long o)
        {
            long end = o;
            while (end < b.Length && b[end] != 0) end++;
            return Encoding.ASCII.GetString(b, (int)o, (int)(end - o));
        }
    }

#if !ELF_PATCHER_NO_MSBUILD
    /// <summary>
    /// MSBuild task: weakens TorchSharp's needless GLIBCXX_3.4.32 need in the copies of libLibTorchSharp.so of an
    /// output folder, on Linux, when the system libstdc++ lacks that version.
    /// </summary>
    public class PatchTorchSharpNative : Microsoft.Build.Utilities.Task
    {
        [Microsoft.Build.Framework.Required]
        public Microsoft.Build.Framework.ITaskItem[] Files { get; set; } = Array.Empty<Microsoft.Build.Framework.ITaskItem>();

        public string VersionName { get; set; } = "GLIBCXX_3.4.32";

        /// <summary>Symbols that may bind to the version: markers that no relocation uses.</summary>
        public string AllowedSymbols { get; set; } = "_ZSt21ios_base_library_initv";

        /// <summary>The NuGet package folder: files under it are never written.</summary>
        public string NuGetPackageRoot { get; set; } = "";

        public override bool Execute()
        {
            if (!System.Runtime.InteropServices.RuntimeInformation.IsOSPlatform(System.Runtime.InteropServices.OSPlatform.Linux))
                return true;
            var libstdcxx = ElfVersionNeedPatcher.FindSystemLibStdCxx(Environment.GetEnvironmentVariable("LD_LIBRARY_PATH"));
            if (libstdcxx == null)
            {
                Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Low, "ML.LinearAttention: no libstdc++.so.6 found; TorchSharp's native library left as it is.");
                return true;
            }
            HashSet<string> defined;
            try { defined = ElfVersionNeedPatcher.ReadVersionDefinitions(File.ReadAllBytes(libstdcxx)); }
            catch (Exception e)
            {
                Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Low, $"ML.LinearAttention: could not read {libstdcxx} ({e.Message}); TorchSharp's native library left as it is.");
                return true;
            }
            if (defined.Contains(VersionName))
            {
                Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Low, $"ML.LinearAttention: {libstdcxx} provides {VersionName}; no patch needed.");
                return true;
            }
            string newest = defined.Where(d => d.StartsWith("GLIBCXX_", StringComparison.Ordinal))
                .OrderBy(d => new Version(d.Substring("GLIBCXX_".Length))).LastOrDefault() ?? "an older version";
            var allowed = new HashSet<string>(AllowedSymbols.Split(new[] { ';', ',' }, StringSplitOptions.RemoveEmptyEntries));
            string cache = string.IsNullOrEmpty(NuGetPackageRoot) ? "" : Path.GetFullPath(NuGetPackageRoot);
            foreach (var item in Files)
            {
                string path = Path.GetFullPath(item.ItemSpec);
                if (!File.Exists(path)) continue;
                if (cache.Length > 0 && path.StartsWith(cache, StringComparison.Ordinal))
                {
                    Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Low, $"ML.LinearAttention: {path} is in the NuGet cache; never patched.");
                    continue;
                }
                try
                {
                    var result = ElfVersionNeedPatcher.WeakenVersionNeedInFile(path, VersionName, allowed, out var blocking);
                    switch (result)
                    {
                        case VersionNeedPatchResult.Patched:
                            Log.LogMessage(Microsoft.Build.Framework.MessageImportance.High,
                                $"ML.LinearAttention: marked the {VersionName} need of {path} weak. The system libstdc++ ({libstdcxx}) stops at {newest}, " +
                                $"and TorchSharp's native library asks for {VersionName} only for the <iostream> marker {AllowedSymbols}, which no relocation uses; " +
                                "without this it fails to load with \"version `" + VersionName + "' not found\". Only this copy in the output folder was changed; the NuGet cache is untouched.");
                            break;
                        case VersionNeedPatchResult.AlreadyWeak:
                            Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Low, $"ML.LinearAttention: {path} already marks {VersionName} weak.");
                            break;
                        case VersionNeedPatchResult.RefusedSymbolsUseIt:
                            Log.LogWarning($"ML.LinearAttention: {path} needs {VersionName} for real symbols ({string.Join(", ", blocking.Take(5))}); it was not patched. " +
                                $"Install a libstdc++ that provides {VersionName} (GCC 13 or newer) or point LD_LIBRARY_PATH at one.");
                            break;
                    }
                }
                catch (Exception e)
                {
                    Log.LogWarning($"ML.LinearAttention: could not patch {path}: {e.Message}");
                }
            }
            return !Log.HasLoggedErrors;
        }
    }
#endif
}
