//! Aggregates through `bgworker::aggregate`: a parallel one whose state lives in a buffer of
//! the aggregate's memory, and a plain one (also the "other aggregate's state" in the test
//! that mixes support functions).

use bgworker::aggregate::{Aggregate, Args, Buffer, Memory, ParallelAggregate};
use bgworker::prelude::*;

/// Sum of squares and count, in the aggregate's memory.
pub struct SumSquares {
    /// `[sum of squares, rows]`.
    totals: Buffer<f64>,
}

impl Aggregate for SumSquares {
    type Output = Option<f64>;
    fn init(memory: &Memory, _args: &Args) -> Result<SumSquares> {
        Ok(SumSquares {
            totals: memory.buffer(2)?,
        })
    }
    fn step(&mut self, _memory: &Memory, args: &Args) -> Result<()> {
        if let Some(x) = args.get::<Option<f64>>(0)? {
            let t = self.totals.as_mut_slice();
            t[0] += x * x;
            t[1] += 1.0;
        }
        Ok(())
    }
    fn finish(&mut self) -> Result<Option<f64>> {
        let t = self.totals.as_slice();
        Ok((t[1] > 0.0).then_some(t[0]))
    }
}

impl ParallelAggregate for SumSquares {
    fn combine(&mut self, other: &mut Self, _memory: &Memory) -> Result<()> {
        let theirs = other.totals.as_slice().to_vec();
        for (mine, theirs) in self.totals.as_mut_slice().iter_mut().zip(theirs) {
            *mine += theirs;
        }
        Ok(())
    }
    fn duplicate(&mut self, memory: &Memory) -> Result<Self> {
        let mut totals = memory.buffer(2)?;
        totals
            .as_mut_slice()
            .copy_from_slice(self.totals.as_slice());
        Ok(SumSquares { totals })
    }
    fn serialize(&mut self) -> Result<Vec<u8>> {
        Ok(self
            .totals
            .as_slice()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect())
    }
    fn deserialize(memory: &Memory, bytes: &[u8]) -> Result<Self> {
        if bytes.len() != 16 {
            return Err(Error::msg("bad sum of squares state"));
        }
        let mut state = SumSquares {
            totals: memory.buffer(2)?,
        };
        for (i, chunk) in bytes.chunks_exact(8).enumerate() {
            state.totals.as_mut_slice()[i] = f64::from_le_bytes(chunk.try_into().unwrap());
        }
        Ok(state)
    }
}

bgworker::sql_aggregate! {
    #[sql(parallel_safe)]
    aggregate rs_sum_squares("double precision"): SumSquares, parallel
}

/// The longest text's length, non-NULL values only.
pub struct Longest(i64);

impl Aggregate for Longest {
    type Output = i64;
    fn init(_memory: &Memory, _args: &Args) -> Result<Longest> {
        Ok(Longest(0))
    }
    fn step(&mut self, _memory: &Memory, args: &Args) -> Result<()> {
        let len = args
            .get::<Option<String>>(0)?
            .map_or(0, |s| s.chars().count());
        self.0 = self.0.max(len as i64);
        Ok(())
    }
    fn finish(&mut self) -> Result<i64> {
        Ok(self.0)
    }
}

bgworker::sql_aggregate! {
    aggregate rs_longest("text"): Longest
}
