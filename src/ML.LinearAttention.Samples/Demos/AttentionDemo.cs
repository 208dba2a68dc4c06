using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Samples.Demos;

/// <summary>
/// Offline demo on built-in synthetic data (documented as such): sequences of event codes of varying length whose
/// label is the code that occurs most often among three "signal" codes. A one-block encoder with each attention
/// mechanism is trained and evaluated on held-out sequences; the table shows accuracy and time per mechanism.
/// </summary>
public static class AttentionDemo
{
    private const int Vocab = 24, Classes = 3, Hidden = 32, Heads = 4;

    public static void Run(TextWriter output, CancellationToken cancellation, int steps = 150, string[]? mechanisms = null)
    {
        var mlContext = new MLContext(seed: 1);
        var device = DevicePolicy.Resolve(mlContext);
        mechanisms ??= new[] { "softmax", "linear", "hedgehog" };
        output.WriteLine($"ML.LinearAttention demo: libtorch {torch.__version__} on {device}, {torch.get_num_threads()} CPU threads");
        output.WriteLine("Built-in synthetic data: event-code sequences (lengths 16..96, padded per batch); label = the most frequent of codes 1, 2, 3.");
        var rng = new Random(42);
        var train = MakeBatches(rng, batches: steps, batchSize: 32);
        var test = MakeBatches(rng, batches: 16, batchSize: 32);
        int majority = test.SelectMany(b => b.Labels).GroupBy(l => l).Max(g => g.Count());
        int total = test.Sum(b => b.Labels.Length);
        output.WriteLine($"{"mechanism",-12} {"accuracy",9} {"train s",8}");
        output.WriteLine($"{"(majority)",-12} {(double)majority / total,9:P1} {"",8}");
        foreach (var name in mechanisms)
        {
            cancellation.ThrowIfCancellationRequested();
            torch.random.manual_seed(1);
            using var model = new TinyClassifier(name).to(device);
            var watch = Stopwatch.StartNew();
            Train(model, train, device, cancellation);
            double accuracy = Evaluate(model, test, device);
            output.WriteLine($"{name,-12} {accuracy,9:P1} {watch.Elapsed.TotalSeconds,8:F1}");
        }
    }

    private sealed record Batch(long[,] Tokens, bool[,] Mask, long[] Labels);

    private static List<Batch> MakeBatches(Random rng, int batches, int batchSize)
    {
        var list = new List<Batch>();
        for (int b = 0; b < batches; b++)
        {
            var lengths = Enumerable.Range(0, batchSize).Select(_ => rng.Next(16, 97)).ToArray();
            int t = lengths.Max();
            var tokens = new long[batchSize, t];
            var mask = new bool[batchSize, t];
            var labels = new long[batchSize];
            for (int i = 0; i < batchSize; i++)
            {
                var counts = new int[Classes];
                for (int j = 0; j < lengths[i]; j++)
                {
                    int code = rng.NextDouble() < 0.2 ? 1 + rng.Next(Classes) : 4 + rng.Next(Vocab - 4);
                    if (code <= Classes) counts[code - 1]++;
                    tokens[i, j] = code;
                    mask[i, j] = true;
                }
                labels[i] = Array.IndexOf(counts, counts.Max());
            }
            list.Add(new Batch(tokens, mask, labels));
        }
        return list;
    }

    private static void Train(TinyClassifier model, List<Batch> batches, Device device, CancellationToken cancellation)
    {
        model.train();
        using var optimizer = optim.AdamW(model.parameters(), lr: 3e-3, weight_decay: 0.01);
        foreach (var batch in batches)
        {
            cancellation.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            var logits = model.forward(torch.tensor(batch.Tokens, device: device), torch.tensor(batch.Mask, device: device));
            var loss = nn.functional.cross_entropy(logits, torch.tensor(batch.Labels, device: device));
            loss.backward();
            nn.utils.clip_grad_norm_(model.parameters(), 1.0);
            optimizer.step();
        }
    }

    private static double Evaluate(TinyClassifier model, List<Batch> batches, Device device)
    {
        model.eval();
        using var noGrad = torch.no_grad();
        long correct = 0, total = 0;
        foreach (var batch in batches)
        {
            using var scope = NewDisposeScope();
            var predicted = model.forward(torch.tensor(batch.Tokens, device: device), torch.tensor(batch.Mask, device: device)).argmax(-1).cpu();
            correct += (predicted == torch.tensor(batch.Labels)).sum().item<long>();
            total += batch.Labels.Length;
        }
        return (double)correct / total;
    }

    /// <summary>Embedding → one pre-norm attention block (mixer from the registry) → masked mean → linear.</summary>
    private sealed class TinyClassifier : nn.Module<Tensor, Tensor, Tensor>
    {
        private readonly Embedding embed;
        private readonly LayerNorm norm;
        private readonly TokenMixer mixer;
        private readonly Linear head;

        public TinyClassifier(string mechanism) : base(nameof(TinyClassifier))
        {
            embed = nn.Embedding(Vocab, Hidden);
            norm = nn.LayerNorm(Hidden);
            mixer = MixerRegistry.Create(mechanism, new MixerConfig(Hidden, Heads));
            head = nn.Linear(Hidden, Classes);
            RegisterComponents();
        }

        public override Tensor forward(Tensor tokens, Tensor mask)
        {
            var x = embed.forward(tokens);
            x = x + mixer.forward(norm.forward(x), mask);
            var m = mask.unsqueeze(-1).to(x.dtype);
            return head.forward((x * m).sum(1) / m.sum(1));
        }
    }
}
