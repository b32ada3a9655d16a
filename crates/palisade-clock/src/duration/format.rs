use std::time::Duration;

/// Writes a duration in the largest of `s`, `ms`, `us` and `ns` that holds it as a
/// whole number: `"90s"`, `"1500ms"`, `"7ns"`, `"0s"`.
///
/// [`parse`](super::parse) reads the text back to the same duration, for every
/// duration up to [`MAX`](super::MAX) (longer ones are written but refused).
///
/// ```
/// use palisade_clock::duration;
/// use std::time::Duration;
///
/// assert_eq!(duration::format(Duration::from_secs(120)), "120s");
/// assert_eq!(duration::format(Duration::from_millis(1500)), "1500ms");
/// assert_eq!(duration::format(Duration::from_micros(3)), "3us");
/// assert_eq!(duration::format(Duration::ZERO), "0s");
/// let d = Duration::new(5, 7);
/// assert_eq!(duration::parse(&duration::format(d)), Ok(d));
/// ```
pub fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos % 1_000_000_000 == 0 {
        format!("{}s", d.as_secs())
    } else if nanos % 1_000_000 == 0 {
        format!("{}ms", nanos / 1_000_000)
    } else if nanos % 1_000 == 0 {
        format!("{}us", nanos / 1_000)
    } else {
        format!("{nanos}ns")
    }
}
