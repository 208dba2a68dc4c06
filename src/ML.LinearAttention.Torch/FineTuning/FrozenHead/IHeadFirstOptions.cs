namespace Microsoft.ML.LinearAttention.FineTuning;

/// <summary>
/// Options of a method that trains more than a head (MP+: the Moment Probing head and PSRP inside the blocks) but can
/// train that head first, alone, on cached features of the frozen encoder (<see cref="FrozenHeadTrainer.TryTrainHeadFirst"/>),
/// before the whole method trains through the encoder from there. The head's result competes with the later epochs on
/// validation, so the method keeps it when they do not improve on it: MP+ is then never worse than MP on validation.
/// </summary>
public interface IHeadFirstOptions
{
    /// <summary>The recipe of the head-first stage, or null to train the whole method from the start.</summary>
    FrozenHeadOptions? HeadFirstRecipe { get; }
}
