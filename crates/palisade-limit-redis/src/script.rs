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
/// Reply: `{allowed (1 or 0), retry_after_us (for the whole cost), remaining,
/// retry_after_one_us (for a single unit)}`, all integers.
pub(crate) const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local stored = redis.call('GET', KEYS[1])
local tat = now
if stored then
  tat = tonumber(stored)
  if tat == nil then
    return redis.error_reply('PALISADE the key holds no rate-limit state')
  end
  if tat < now then tat = now end
end
local latest = now + tolerance
local last = tat + interval * (cost - 1)
if last > latest then
  local one = tat - latest
  if one < 0 then one = 0 end
  local remaining = 0
  if tat <= latest then remaining = math.floor((latest - tat) / interval) + 1 end
  return {0, last - latest, remaining, one}
end
local next = tat + interval * cost
redis.call('SET', KEYS[1], string.format('%d', next), 'PX', math.floor((next - now) / 1000) + 1)
local remaining = 0
if next <= latest then remaining = math.floor((latest - next) / interval) + 1 end
return {1, 0, remaining, 0}
"#;

/// One decision, as the script answered it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) allowed: bool,
    pub(crate) retry_after_us: u64,
    pub(crate) remaining: u64,
    pub(crate) retry_after_one_us: u64,
}

/// Reads the script's reply; anything but four non-negative integers with a 0 or
/// 1 first is [`Error::Reply`].
pub(crate) fn parse(value: &Value) -> Result<Reply, Error> {
    let Value::Array(items) = value else {
        return Err(Error::reply(format!(
            "expected an array of 4 integers, got {value:?}"
        )));
    };
    let mut n = [0u64; 4];
    if items.len() != 4 {
        return Err(Error::reply(format!(
            "expected 4 integers, got {} items",
            items.len()
        )));
    }
    for (slot, item) in n.iter_mut().zip(items) {
        match item {
            Value::Int(i) if *i >= 0 => *slot = *i as u64,
            other => {
                return Err(Error::reply(format!(
                    "expected a non-negative integer, got {other:?}"
                )));
            }
        }
    }
    if n[0] > 1 {
        return Err(Error::reply(format!("expected 0 or 1 first, got {}", n[0])));
    }
    Ok(Reply {
        allowed: n[0] == 1,
        retry_after_us: n[1],
        remaining: n[2],
        retry_after_one_us: n[3],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_well_formed_reply() {
        let v = Value::Array(vec![
            Value::Int(0),
            Value::Int(1500),
            Value::Int(0),
            Value::Int(500),
        ]);
        let r = parse(&v).unwrap();
        assert!(!r.allowed);
        assert_eq!(r.retry_after_us, 1500);
        assert_eq!(r.retry_after_one_us, 500);
    }

    #[test]
    fn refuses_every_other_shape() {
        for v in [
            Value::Nil,
            Value::Int(1),
            Value::Okay,
            Value::Array(vec![Value::Int(1)]),
            Value::Array(vec![
                Value::Int(2),
                Value::Int(0),
                Value::Int(0),
                Value::Int(0),
            ]),
            Value::Array(vec![
                Value::Int(1),
                Value::Int(-1),
                Value::Int(0),
                Value::Int(0),
            ]),
            Value::Array(vec![
                Value::Int(1),
                Value::Nil,
                Value::Int(0),
                Value::Int(0),
            ]),
        ] {
            let err = parse(&v).unwrap_err();
            assert!(err.to_string().contains("reply"), "{err}");
        }
    }
}
