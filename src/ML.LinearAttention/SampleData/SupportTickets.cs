using Microsoft.ML.Data;

namespace Microsoft.ML.LinearAttention.SampleData;

/// <summary>
/// One SYNTHETIC support ticket: free text (title, body) plus tabular fields, the shape of data this library is for.
/// Produced by <see cref="SupportTickets.Generate"/>; no real customer data is involved.
/// </summary>
public sealed class SupportTicket
{
    /// <summary>One-line summary written by the customer.</summary>
    public string Title { get; set; } = "";
    /// <summary>Free-text description (a few sentences, sometimes a log excerpt).</summary>
    public string Body { get; set; } = "";
    /// <summary>Numeric side features: [customer tier 0–3, affected users (log10), account age in years, open tickets of the customer].</summary>
    [VectorType(4)] public float[] Numbers { get; set; } = new float[4];
    /// <summary>Priority assigned by the support team: Low, Medium, High or Urgent (the classification label).</summary>
    public string Priority { get; set; } = "";
    /// <summary>Hours until the ticket was resolved (a regression target).</summary>
    public float ResolutionHours { get; set; }
}

/// <summary>
/// A deterministic generator of realistic, SYNTHETIC support tickets for demos, docs and tests (users have no access to
/// this project's test data). Priority depends on the issue type, on wording (outage words, "all users",
/// "production"), on the tabular fields (customer tier, affected users) and on noise, so a model must read the text
/// and use the numbers to do well; about 10% of labels are flipped to a neighbouring priority, as real triage is noisy.
/// <para>About 40% are follow-ups on an earlier ticket: they describe two issues, say that the first one is fixed, and
/// are triaged by the second, still-open one. Both issues use the same words in either order, so only a model that
/// reads the order (which issue comes after "fixed") can triage them; a bag of words sees both and must guess.</para>
/// </summary>
public static class SupportTickets
{
    /// <summary>The classes of <see cref="SupportTicket.Priority"/>, from least to most urgent.</summary>
    public static readonly IReadOnlyList<string> Priorities = new[] { "Low", "Medium", "High", "Urgent" };

    private static readonly string[] Products = { "Invoicing", "the mobile app", "the web portal", "Payroll", "the API", "Reporting", "the checkout page", "SSO" };
    private static readonly string[] Browsers = { "Chrome", "Firefox", "Edge", "Safari", "the iOS app", "the Android app" };
    private static readonly string[] Codes = { "ERR_502", "E1043", "TIMEOUT_30S", "0x80070005", "HTTP 500", "AUTH_EXPIRED", "DB_LOCK" };

    private sealed record Issue(string Kind, int BasePriority, string[] Titles, string[] Bodies);

    private static readonly Issue[] Issues =
    {
        new("outage", 3,
            new[] { "{P} is down", "Cannot reach {P} at all", "{P} returns {C} for everyone", "Total outage of {P}" },
            new[] { "Since {T} nobody in our company can open {P}. Every request ends with {C}.", "{P} has been down for {N} minutes and our team is blocked.",
                    "All users get {C} when they open {P} in {B}. This is our production system." }),
        new("security", 3,
            new[] { "Suspicious logins on our account", "Possible data leak in {P}", "Password reset emails we did not request" },
            new[] { "We see logins from unknown countries since {T}. Please lock the account.", "An employee could see another customer's invoices in {P}.",
                    "Several users received reset emails they never asked for. We are worried about a breach." }),
        new("bug", 1,
            new[] { "{P} shows the wrong total", "Export from {P} fails", "Button does nothing in {P}", "{C} when saving in {P}" },
            new[] { "When I export the monthly report from {P} the file is empty. It worked last week.", "Saving a draft in {P} fails with {C} in {B}.",
                    "The totals in {P} are off by a few cents when a discount is applied.", "Clicking save in {B} does nothing; the console shows {C}." }),
        new("billing", 1,
            new[] { "Charged twice this month", "Invoice has the wrong VAT number", "Question about my bill", "Refund not received" },
            new[] { "Our card was charged twice on {T}. Please refund the duplicate payment.", "The invoice for March lists our old VAT number, please correct it.",
                    "We were promised a refund {N} days ago and have not received it yet." }),
        new("login", 2,
            new[] { "Cannot log in", "SSO login loops forever", "Locked out after password change", "Two-factor code never arrives" },
            new[] { "After changing my password I get {C} and cannot log in to {P}.", "Logging in through SSO sends me back to the login page in {B}.",
                    "The two-factor SMS never arrives, so I am locked out since {T}." }),
        new("howto", 0,
            new[] { "How do I add a user?", "Where can I change the logo?", "Question about exports", "How to set up a webhook in {P}" },
            new[] { "Could you tell me how to add a new colleague to {P}? Thanks!", "Is there a way to change the logo on invoices? No rush.",
                    "I would like to export data from {P} to Excel, where do I find that option?" }),
        new("feature", 0,
            new[] { "Feature request: dark mode", "Please add CSV import to {P}", "Suggestion for the dashboard", "Would love an API for {P}" },
            new[] { "It would be great if {P} had a dark mode. Just an idea for the roadmap.", "We would like to import customers from CSV files in {P}.",
                    "A weekly summary email of the dashboard would help our managers." }),
    };

    private static readonly string[] Urgency = { " This is urgent.", " Our customers are affected right now.", " Production is blocked!", " We are losing sales every minute." };
    private static readonly string[] Calm = { " No rush.", " Whenever you have time.", " Thanks in advance.", " Not blocking us." };
    private static readonly string[] Times = { "this morning", "yesterday", "9:40 UTC", "the last deployment", "Monday", "an hour ago" };
    private static readonly string[] FollowUpTitles = { "Follow-up on our earlier ticket", "Update on our case", "Re: our open ticket", "One problem solved, one left", "Status of our support case" };
    private static readonly string[] Fixed = { "That part is fixed now, thank you.", "This one is solved since your last reply.", "That was resolved by your team, thanks.", "Your fix for that works." };
    private static readonly string[] StillOpen = { "What is still open:", "But there is still this:", "Still not working:", "Remaining problem:" };
    private static readonly string[] Greetings = { "Hello,", "Hi team,", "Good morning,", "Dear support," };
    private static readonly string[] SignOffs = { "Regards.", "Best, Sam.", "Thanks, Alex.", "Kind regards." };

    /// <summary>Share of follow-up tickets (two issues, the first fixed; priority from the second).</summary>
    private const double FollowUpShare = 0.4;

    /// <summary>Generates <paramref name="count"/> tickets; the same seed always gives the same tickets.</summary>
    public static List<SupportTicket> Generate(int count, int seed = 1)
    {
        if (count < 0) throw new ArgumentOutOfRangeException(nameof(count), count, "The number of tickets cannot be negative.");
        var rng = new Random(seed);
        var tickets = new List<SupportTicket>(count);
        for (int i = 0; i < count; i++) tickets.Add(One(rng));
        return tickets;
    }

    private static SupportTicket One(Random rng)
    {
        var issue = Issues[rng.Next(Issues.Length)];
        string product = Pick(rng, Products), code = Pick(rng, Codes), browser = Pick(rng, Browsers), time = Pick(rng, Times);
        string Fill(string s) => s.Replace("{P}", product).Replace("{C}", code).Replace("{B}", browser).Replace("{T}", time)
                                  .Replace("{N}", (5 + rng.Next(90)).ToString(System.Globalization.CultureInfo.InvariantCulture));
        string title, body;
        if (rng.NextDouble() < FollowUpShare)
        {
            // The fixed issue and the open one (`issue`) are drawn alike, so their words say nothing about which is which.
            Issue done;
            do done = Issues[rng.Next(Issues.Length)]; while (done.BasePriority == issue.BasePriority);
            title = Pick(rng, FollowUpTitles);
            // Each issue is wrapped alike ("About case N: … (ref N)"), so no word pair at its edges tells a bag of words its place.
            string Case(Issue i) { int id = 1000 + rng.Next(9000); return $"About case {id}: {Fill(Pick(rng, i.Bodies))} (ref {id})"; }
            body = $"{Pick(rng, Greetings)} {Case(done)} {Pick(rng, Fixed)} {Pick(rng, StillOpen)} {Case(issue)} {Pick(rng, SignOffs)}";
        }
        else
        {
            title = Fill(Pick(rng, issue.Titles));
            body = Fill(Pick(rng, issue.Bodies));
            if (rng.NextDouble() < 0.5) body += " " + Fill(Pick(rng, issue.Bodies));
        }

        int tier = rng.Next(4);                                   // 0 free … 3 enterprise
        double affected = Math.Round(rng.NextDouble() * 4, 2);    // log10 of affected users
        double age = Math.Round(rng.NextDouble() * 8, 1);
        int open = rng.Next(6);
        double score = issue.BasePriority + 0.35 * (tier - 1.5) + 0.3 * (affected - 2);
        if (rng.NextDouble() < 0.25) { body += Pick(rng, Urgency); score += 0.9; }
        else if (rng.NextDouble() < 0.25) { body += Pick(rng, Calm); score -= 0.6; }
        if (issue.Kind is "bug" or "login" && body.Contains("production", StringComparison.OrdinalIgnoreCase)) score += 0.5;
        if (rng.NextDouble() < 0.15) body += $" Log: [{time}] {code} at {product.Replace(' ', '_')}.Handler line {100 + rng.Next(900)}.";
        int priority = Math.Clamp((int)Math.Round(score + (rng.NextDouble() - 0.5) * 0.6), 0, 3);
        if (rng.NextDouble() < 0.10) priority = Math.Clamp(priority + (rng.Next(2) == 0 ? -1 : 1), 0, 3);

        double hours = new[] { 72.0, 24.0, 8.0, 2.0 }[priority] * (0.6 + 0.8 * rng.NextDouble()) + body.Length / 60.0 + open * 1.5;
        return new SupportTicket
        {
            Title = title,
            Body = body,
            Numbers = new[] { (float)tier, (float)affected, (float)age, (float)open },
            Priority = Priorities[priority],
            ResolutionHours = (float)Math.Round(hours, 1),
        };
    }

    /// <summary>Whether <paramref name="ticket"/> is a follow-up (two issues, the first fixed): the tickets whose priority
    /// only a model that reads word order can tell.</summary>
    public static bool IsFollowUp(SupportTicket ticket)
    {
        ArgumentNullException.ThrowIfNull(ticket);
        return FollowUpTitles.Contains(ticket.Title);
    }

    private static string Pick(Random rng, string[] items) => items[rng.Next(items.Length)];
}
