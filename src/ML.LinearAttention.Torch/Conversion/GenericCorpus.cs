using System.Text;
using Microsoft.ML.LinearAttention.Tokenization;
using Microsoft.ML.LinearAttention.Training;

namespace Microsoft.ML.LinearAttention.Conversion;

/// <summary>
/// Generated, unlabelled English text that tops up attention transfer when a user has few texts of their own. It ships
/// with the library (no download, no data set copied in): sentences built from templates and word lists in the
/// registers this library is used on — product, film and service reviews, support tickets, business e-mail, short news
/// and document prose — one to four sentences a text, so the frozen softmax teacher sees varied lengths, negation,
/// lists, clauses and named things. Deterministic for a seed. Its attention patterns are only a stand-in for the user's
/// own; the user's texts always come first (<see cref="TransferBudget"/>).
/// </summary>
public static class GenericCorpus
{
    /// <summary><paramref name="count"/> texts for <paramref name="seed"/>; text i is the same for every count.</summary>
    public static IEnumerable<string> Texts(int count, int seed)
    {
        if (count < 0) throw new ArgumentOutOfRangeException(nameof(count), count, "The number of generic texts cannot be negative.");
        for (int i = 0; i < count; i++) yield return Text(new Random(unchecked(seed * 7_919 + i * 104_729)));
    }

    /// <summary>
    /// The stage-1 rows: <paramref name="user"/> and <paramref name="genericCount"/> generic texts tokenized as one text
    /// each, shuffled together with <paramref name="seed"/> so every batch pool mixes both.
    /// </summary>
    public static List<Example> Mix(IReadOnlyList<Example> user, int genericCount, TextTokenizer tokenizer, int maxLength, int seed)
    {
        ArgumentNullException.ThrowIfNull(user);
        ArgumentNullException.ThrowIfNull(tokenizer);
        var generic = Texts(genericCount, seed).Select(text =>
        {
            var enc = tokenizer.Encode(new[] { text.AsMemory() }, maxLength);
            return new Example { Ids = enc.Ids, Segments = enc.Segments, Length = enc.Ids.Length };
        });
        var rng = new Random(seed);
        return user.Concat(generic).OrderBy(_ => rng.Next()).ToList();
    }

    private static string Text(Random rng)
    {
        var sb = new StringBuilder();
        var register = Registers[rng.Next(Registers.Length)];
        int sentences = 1 + rng.Next(4);
        for (int s = 0; s < sentences; s++)
        {
            if (s > 0) sb.Append(' ');
            sb.Append(Fill(register[rng.Next(register.Length)], rng));
        }
        return sb.ToString();
    }

    private static string Fill(string template, Random rng)
    {
        var sb = new StringBuilder(template.Length * 2);
        for (int i = 0; i < template.Length; i++)
        {
            if (template[i] != '{') { sb.Append(template[i]); continue; }
            int end = template.IndexOf('}', i);
            var slot = template.AsSpan(i + 1, end - i - 1).ToString();
            sb.Append(slot == "n" ? (1 + rng.Next(rng.Next(2) == 0 ? 12 : 500)).ToString(System.Globalization.CultureInfo.InvariantCulture) : Pick(Slots[slot], rng));
            i = end;
        }
        var text = sb.ToString();
        return char.ToUpperInvariant(text[0]) + text[1..];
    }

    private static string Pick(string[] words, Random rng) => words[rng.Next(words.Length)];

    private static readonly Dictionary<string, string[]> Slots = new()
    {
        ["adj+"] = new[] { "great", "excellent", "wonderful", "reliable", "charming", "clever", "smooth", "beautiful", "solid", "delightful", "moving", "fast", "friendly", "sharp", "generous", "polished", "funny", "honest" },
        ["adj-"] = new[] { "terrible", "disappointing", "slow", "broken", "dull", "confusing", "noisy", "flimsy", "overpriced", "clumsy", "rude", "boring", "predictable", "messy", "shallow", "tedious", "cheap", "awkward" },
        ["adv"] = new[] { "really", "quite", "surprisingly", "far too", "rather", "genuinely", "a bit", "almost", "never", "always", "clearly", "hardly" },
        ["thing"] = new[] { "phone", "laptop", "blender", "jacket", "headset", "vacuum cleaner", "coffee machine", "printer", "mattress", "backpack", "camera", "monitor", "kettle", "desk chair", "router" },
        ["place"] = new[] { "hotel", "restaurant", "cafe", "gym", "clinic", "bakery", "airport lounge", "bookshop", "garage", "pharmacy", "museum" },
        ["film"] = new[] { "movie", "film", "documentary", "thriller", "comedy", "drama", "sequel", "animated feature", "series", "musical" },
        ["part"] = new[] { "plot", "acting", "script", "soundtrack", "ending", "pacing", "dialogue", "cast", "camera work", "lead performance", "first half", "humour" },
        ["feature"] = new[] { "battery", "screen", "keyboard", "lid", "zipper", "cable", "handle", "software", "manual", "packaging", "speaker", "hinge", "fan" },
        ["staff"] = new[] { "staff", "waiter", "receptionist", "driver", "manager", "support agent", "doctor", "technician", "owner", "host" },
        ["product"] = new[] { "the billing portal", "the mobile app", "the reporting module", "the checkout page", "our account", "the API", "the admin console", "the payroll service", "single sign-on", "the dashboard" },
        ["problem"] = new[] { "times out", "shows an error", "logs me out", "freezes", "loads a blank page", "rejects my password", "charges the card twice", "loses the draft", "sends duplicate emails", "crashes on start" },
        ["person"] = new[] { "Maria", "the finance team", "our director", "a new customer", "the auditors", "John", "the night shift", "our partner in Lyon", "the sales lead", "Aisha", "the board" },
        ["doc"] = new[] { "contract", "quarterly report", "invoice", "proposal", "meeting notes", "budget", "policy", "schedule", "presentation", "purchase order", "survey results" },
        ["time"] = new[] { "yesterday", "this morning", "last week", "on Monday", "since the update", "two days ago", "tonight", "before Friday", "at the end of the month", "next quarter" },
        ["org"] = new[] { "the city council", "a regional bank", "the university", "the energy company", "a local charity", "the health ministry", "an airline", "the football club", "a software startup", "the central bank" },
        ["act"] = new[] { "announced", "delayed", "approved", "cancelled", "reviewed", "expanded", "reported", "rejected", "launched", "postponed" },
        ["topic"] = new[] { "a new plan for public transport", "higher interest rates", "the merger", "a data breach", "record profits", "new safety rules", "a hiring freeze", "the opening of a second site", "lower energy prices", "a recall of faulty parts" },
        ["verb"] = new[] { "loved", "hated", "enjoyed", "returned", "recommended", "regretted buying", "kept using", "gave up on", "was impressed by", "was let down by" },
        ["feel"] = new[] { "happy", "annoyed", "relieved", "frustrated", "grateful", "confused", "impressed", "worried", "satisfied", "tired" },
    };

    private static readonly string[][] Registers =
    {
        new[] // product reviews
        {
            "the {thing} is {adv} {adj+} and the {feature} works as promised.", "I {verb} this {thing}.", "the {feature} broke after {n} days, which is {adj-}.",
            "not {adj+} at all: the {feature} is {adj-} and support never answered.", "for the price, the {thing} is {adv} {adj+}, although the {feature} feels {adj-}.",
            "would I buy this {thing} again? probably not.", "{n} stars, because the {feature} is {adj+} but the {feature} is {adj-}.",
            "my old {thing} lasted {n} years; this one did not make it past a month.", "it arrived {time}, well packed, and it is {adj+}.",
        },
        new[] // film reviews
        {
            "the {film} is {adv} {adj+}, and the {part} carries it.", "a {adj-} {film} with a {adj-} {part}.", "I {verb} the {part}, but the {part} is {adj-}.",
            "it is not a {adj+} {film}, yet it is never {adj-} either.", "the {part} makes this {film} {adj+} from start to finish.",
            "after {n} minutes I stopped caring about anyone on screen.", "if you liked the first one, the {part} of this {film} will feel {adj-}.",
            "a {adj+}, {adj+} {film} that knows exactly what it wants to say.", "the {part} is {adv} {adj-}, which is a shame because the {part} is {adj+}.",
        },
        new[] // service reviews
        {
            "the {staff} at this {place} was {adv} {adj+}.", "we waited {n} minutes and the {staff} was {adj-}.", "a {adj+} {place}; we will come back {time}.",
            "the {place} itself is {adj+}, but the {staff} made us feel {feel}.", "do not go to this {place} if you are in a hurry.",
            "I left the {place} {feel}, and not in a good way.", "clean rooms, a {adj+} {staff}, and a {adj-} breakfast.",
        },
        new[] // support tickets
        {
            "{product} {problem} every time I try to pay.", "since {time}, {product} {problem} for {n} of our users.", "please help: {product} {problem} and we cannot work.",
            "error code {n} appears when {person} opens {product}.", "I have already cleared the cache and restarted, but {product} still {problem}.",
            "this is urgent, {product} {problem} and {person} is waiting.", "is there a known issue with {product}? it {problem} {time}.",
            "thanks, the fix worked and {product} no longer {problem}.",
        },
        new[] // business e-mail and documents
        {
            "please find the {doc} attached and send your comments {time}.", "{person} asked whether the {doc} can be signed {time}.",
            "as discussed, we will update the {doc} and share it with {person}.", "the {doc} was approved, but the budget line for travel is still open.",
            "could you check section {n} of the {doc} before we send it to {person}?", "we are {feel} with the progress so far and expect the {doc} {time}.",
            "the deadline for the {doc} moved, so {person} will present it {time}.", "I could not open the {doc}; could you send it again as a PDF?",
        },
        new[] // news
        {
            "{org} {act} {topic} {time}.", "according to {person}, {org} {act} {topic} after months of talks.", "shares fell {n} percent after {org} {act} {topic}.",
            "{org} said on Monday that it had {act} {topic}, citing costs.", "critics say the decision by {org} is {adj-}, while supporters call it {adj+}.",
            "more than {n} people attended the meeting where {org} {act} {topic}.", "the report, published {time}, found that {topic} was {adv} {adj-} for small firms.",
        },
    };
}
