//! The GCRA as one Lua script: what runs on Redis per decision, and the reading
//! of its reply.

use redis::Value;

use crate::error::Error;

/// The script. `KEYS[1]` is the key; `ARGV` are the interval and the tolerance in
/// microseconds and the cost. The time is Redis's own (`TIME`), so processes with
/// skewed clocks agree; the state is the key's theoretical arrival time in whole
/// microseconds of that clock, written only when a decision passes, and expiring
/// (`PX`) once the key is back at a full burst, so idle keys leave nothing behind.
///
/// The reply is one integer, so that the script does as little as it can (each
/// `redis.call` and each table costs the server about a microsecond): the
/// remaining burst (`>= 0`) when the decision passes, or minus the microseconds
/// until the whole cost would pass (`< 0`) when it does not; [`parse`] works out
/// the rest from that and the cost.
pub(crate) const GCRA: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local interval = ARGV[1] + 0
local tat = redis.call('GET', KEYS[1])
if tat then
  tat = tonumber(tat)
  if tat == nil then
    return redis.error_reply('PALISADE the key holds no rate-limit state')
  end
  if tat < now then tat = now end
else
  tat = now
end
local latest = now + ARGV[2]
local last = tat + interval * (ARGV[3] - 1)
if last > latest then return latest - last end
local next = last + interval
redis.call('SET', KEYS[1], next, 'PX', math.floor((next - now) / 1000) + 1)
return math.floor((latest - next) / interval) + 1
"#;

/// One decision, as the script answered it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) allowed: bool,
    /// Until the whole cost would pass (0 when allowed).
    pub(crate) retry_after_us: u64,
    /// Single units that would pass right after the decision.
    pub(crate) remaining: u64,
    /// Until a single unit would pass (0 when one would pass now).
    pub(crate) retry_after_one_us: u64,
}

/// Reads the script's reply to a decision of `cost` units at `interval_us`;
/// anything but an integer is [`Error::Reply`].
pub(crate) fn parse(value: &Value, cost: u32, interval_us: u64) -> Result<Reply, Error> {
    let Value::Int(n) = *value else {
        return Err(Error::reply(format!("expected an integer, got {value:?}")));
    };
    if n >= 0 {
        return Ok(Reply {
            allowed: true,
            retry_after_us: 0,
            remaining: n as u64,
            retry_after_one_us: 0,
        });
    }
    // Refused: `-n = tat + interval × (cost - 1) - latest`, so the schedule of a
    // single unit is `d = -n - interval × (cost - 1)` past what one unit allows.
    let retry = n.unsigned_abs();
    let rest = interval_us.saturating_mul(u64::from(cost.saturating_sub(1)));
    let (retry_one, remaining) = if retry > rest {
        (retry - rest, 0)
    } else {
        (0, (rest - retry) / interval_us.max(1) + 1)
    };
    Ok(Reply {
        allowed: false,
        retry_after_us: retry,
        remaining,
        retry_after_one_us: retry_one,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_decision_that_passed() {
        let r = parse(&Value::Int(4), 1, 1000).unwrap();
        assert!(r.allowed);
        assert_eq!(r.remaining, 4);
    }

    #[test]
    fn works_out_a_refusal() {
        // One unit refused for 1.5 ms.
        let r = parse(&Value::Int(-1500), 1, 1000).unwrap();
        assert!(!r.allowed);
        assert_eq!(
            (r.retry_after_us, r.retry_after_one_us, r.remaining),
            (1500, 1500, 0)
        );
        // Three units refused for 1.5 ms at 1 ms each: one unit passes now, and
        // one more after it.
        let r = parse(&Value::Int(-1500), 3, 1000).unwrap();
        assert_eq!(
            (r.retry_after_us, r.retry_after_one_us, r.remaining),
            (1500, 0, 1)
        );
    }

    #[test]
    fn refuses_every_other_shape() {
        for v in [
            Value::Nil,
            Value::Okay,
            Value::Array(vec![Value::Int(1)]),
            Value::BulkString(b"1".to_vec()),
            Value::SimpleString("1".into()),
        ] {
            let err = parse(&v, 1, 1000).unwrap_err();
            assert!(err.to_string().contains("reply"), "{err}");
        }
    }
}
