"""CPU tests of the fla comparison scripts (no torch, no GPU): fla_bench.py's argument checks and error text, and
make_table.py's table from fake JSON. Run: python3 -m unittest discover -s tools/fla-comparison -p 'test_*.py'"""
import contextlib
import io
import json
import os
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True   # no __pycache__ beside the scripts
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fla_bench  # noqa: E402  (imports no torch until run())
import make_table  # noqa: E402


def quiet_exit(f):
    with contextlib.redirect_stderr(io.StringIO()) as err, unittest.TestCase().assertRaises(SystemExit):
        f()
    return err.getvalue()


class FlaBenchArguments(unittest.TestCase):
    def setUp(self):
        self.tree = tempfile.mkdtemp()
        os.mkdir(os.path.join(self.tree, "fla"))

    def test_defaults_are_the_kernel_benchmark_shapes(self):
        a = fla_bench.parse_args(["--fla", self.tree, "--out", "x.json"])
        self.assertEqual([512, 2048, 8192, 32768], a.lengths)
        self.assertEqual((32768, 12, 64, "bf16"), (a.tokens, a.heads, a.dim, a.dtype))
        self.assertEqual(list(fla_bench.KERNELS), a.mechanisms)

    def test_unknown_mechanism_is_named(self):
        err = quiet_exit(lambda: fla_bench.parse_args(["--fla", self.tree, "--out", "x", "--mechanisms", "gla,nope"]))
        self.assertIn("nope", err)
        self.assertIn("simple_gla", err)

    def test_length_must_divide_the_tokens(self):
        err = quiet_exit(lambda: fla_bench.parse_args(["--fla", self.tree, "--out", "x", "--lengths", "512,3000"]))
        self.assertIn("3000", err)

    def test_a_folder_without_fla_is_refused(self):
        err = quiet_exit(lambda: fla_bench.parse_args(["--fla", tempfile.mkdtemp(), "--out", "x"]))
        self.assertIn("no fla/ folder", err)

    def test_error_text_is_one_short_line(self):
        self.assertEqual("ValueError: bad shape", fla_bench.error_text(ValueError("bad shape\nTraceback ...")))
        self.assertEqual(240, len(fla_bench.error_text(RuntimeError("x" * 1000))))
        self.assertEqual("KeyError: 'k'", fla_bench.error_text(KeyError("k")))


class MakeTable(unittest.TestCase):
    kernels = {"Commit": "abc1234", "Machine": "NVIDIA H200 (test)", "DType": "BFloat16", "TokensPerBatch": 32768,
               "Heads": 12, "HeadDim": 64, "Results": [
                   {"Mechanism": "linear", "Case": "relu causal fused mma", "Causal": True, "T": 512,
                    "FwdBwdMs": 1.4, "GpuFwdBwdMs": 1.3, "Error": None},
                   {"Mechanism": "simple_gla", "Case": "causal chunk64", "Causal": True, "T": 512,
                    "FwdBwdMs": 5.5, "GpuFwdBwdMs": 5.2, "Error": None},
                   {"Mechanism": "simple_gla", "Case": "causal fused mma", "Causal": True, "T": 512,
                    "FwdBwdMs": 2.8, "GpuFwdBwdMs": 2.6, "Error": None},
                   {"Mechanism": "simple_gla", "Case": "bidirectional fused mma", "Causal": False, "T": 512,
                    "FwdBwdMs": 0.1, "GpuFwdBwdMs": 0.1, "Error": None},
                   {"Mechanism": "kda", "Case": "causal chunk64", "Causal": True, "T": 512,
                    "FwdBwdMs": 40.0, "GpuFwdBwdMs": None, "Error": None}]}
    fla = {"CommandLine": "python3 tools/fla-comparison/fla_bench.py --fla f --out o", "Machine": "NVIDIA H200",
           "Torch": "2.9.0", "Triton": "3.5.0", "FlaCommit": "bc3b101", "DType": "bf16", "TokensPerBatch": 32768,
           "Heads": 12, "HeadDim": 64, "Warmup": 5, "Iterations": 20, "Date": "2026-12-07", "Results": [
               {"Mechanism": "simple_gla", "Kernel": "chunk_simple_gla", "T": 512, "B": 64, "FwdMs": 0.5,
                "FwdBwdMs": 1.3, "Error": None},
               {"Mechanism": "kda", "Kernel": "chunk_kda", "T": 512, "B": 64, "FwdMs": None, "FwdBwdMs": None,
                "Error": "RuntimeError: a | b"},
               {"Mechanism": "mlstm", "Kernel": None, "T": 512, "B": 64, "FwdMs": None, "FwdBwdMs": None,
                "Error": "fla has no chunk kernel for this mechanism (none in fla/ops)"}]}

    def test_rows_take_our_fastest_causal_case_and_the_ratios(self):
        md = make_table.render(self.fla, self.kernels, "cmd")
        self.assertIn("| simple_gla | 512 | causal fused mma | 2.600 (GPU) | chunk_simple_gla | 1.300 | 2.00× | 2.00× |", md)
        # wall clock where no GPU clock was measured; fla's exception escaped for the table
        self.assertIn("| kda | 512 | causal chunk64 | 40.0 (wall) | chunk_kda | RuntimeError: a \\| b | — | 30.77× |", md)
        self.assertIn("| mlstm | 512 | no result | — | — | fla has no chunk kernel", md)
        self.assertIn("commit `abc1234`", md)
        self.assertIn("commit `bc3b101`", md)
        self.assertNotIn("different machines", md)

    def test_different_machines_are_flagged(self):
        md = make_table.render(dict(self.fla, Machine="NVIDIA H100"), self.kernels, "cmd")
        self.assertIn("different machines", md)

    def test_main_writes_the_file_with_its_command_line(self):
        d = tempfile.mkdtemp()
        paths = {n: os.path.join(d, n + ".json") for n in ("fla", "kernels")}
        for n, data in (("fla", self.fla), ("kernels", self.kernels)):
            with open(paths[n], "w") as f:
                json.dump(data, f)
        out = os.path.join(d, "fla-comparison.md")
        with contextlib.redirect_stdout(io.StringIO()):
            make_table.main(["--fla-json", paths["fla"], "--kernels-json", paths["kernels"], "--out", out])
        with open(out) as f:
            text = f.read()
        self.assertTrue(text.startswith("# Gated and delta-rule kernels against fla"))
        self.assertIn("make_table.py --fla-json", text)

    def test_missing_results_is_a_clear_error(self):
        d = tempfile.mkdtemp()
        bad = os.path.join(d, "bad.json")
        with open(bad, "w") as f:
            json.dump({}, f)
        with self.assertRaises(SystemExit) as e:
            make_table.main(["--fla-json", bad, "--kernels-json", bad, "--out", os.path.join(d, "o.md")])
        self.assertIn("Results", str(e.exception))


if __name__ == "__main__":
    unittest.main()
