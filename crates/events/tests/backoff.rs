//! Exponential backoff with full jitter.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tenancy_events::backoff::{ceiling, delay, delay_with_rng, Schedule};

const S: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn ceilings_double_and_cap() {
    let c: Vec<Duration> = (0..6).map(|a| ceiling(a, S(1), S(10))).collect();
    assert_eq!(c, [S(1), S(2), S(4), S(8), S(10), S(10)]);
    assert_eq!(ceiling(200, S(1), S(3600)), S(3600), "no overflow on huge attempts");
}

#[test]
fn delays_stay_within_the_ceiling() {
    let mut rng = StdRng::seed_from_u64(7);
    for attempt in 0..20 {
        for _ in 0..50 {
            let d = delay_with_rng(attempt, Duration::from_millis(100), S(60), &mut rng);
            assert!(d <= ceiling(attempt, Duration::from_millis(100), S(60)));
        }
    }
    assert!(delay(3, S(1), S(60)) <= S(8));
    assert_eq!(delay(3, Duration::ZERO, S(60)), Duration::ZERO);
}

#[test]
fn jitter_is_deterministic_with_a_seeded_rng_and_spreads_out() {
    let draw = |seed| {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..10).map(|a| delay_with_rng(a, S(1), S(600), &mut rng)).collect::<Vec<_>>()
    };
    assert_eq!(draw(1), draw(1));
    assert_ne!(draw(1), draw(2));
    let mut rng = StdRng::seed_from_u64(3);
    let samples: Vec<Duration> = (0..1000).map(|_| delay_with_rng(4, S(1), S(600), &mut rng)).collect();
    let mean = samples.iter().sum::<Duration>() / 1000;
    assert!(mean > S(6) && mean < S(10), "full jitter averages half the ceiling: {mean:?}");
}

#[test]
fn schedule_covers_the_window() {
    for attempts in [1u32, 5, 8, 12, 20] {
        let s = Schedule::covering(Schedule::DEFAULT_WINDOW, attempts);
        assert_eq!(s.attempts(), attempts);
        let total = s.max_total();
        assert!(total <= Schedule::DEFAULT_WINDOW, "{attempts}: {total:?}");
        // Truncating the base to whole nanoseconds loses under 2^attempts ns.
        assert!(Schedule::DEFAULT_WINDOW - total < Duration::from_millis(2), "{attempts}: {total:?}");
        let mut rng = StdRng::seed_from_u64(attempts.into());
        let drawn: Duration = (0..attempts).map(|a| s.next_delay(a, &mut rng).unwrap()).sum();
        assert!(drawn <= Schedule::DEFAULT_WINDOW);
        assert_eq!(s.next_delay(attempts, &mut rng), None);
    }
    let s = Schedule::covering(Schedule::DEFAULT_WINDOW, 8);
    // 86400 s / 255 ~ 338.8 s first ceiling, ~12 h last.
    assert_eq!(s.base().as_secs(), 338);
    assert_eq!(s.max_delay().as_secs(), 43_369);
    assert_eq!(s.ceilings().count(), 8);
}

#[test]
fn explicit_schedule() {
    let s = Schedule::new(S(5), S(3600), 3);
    assert_eq!(s.ceilings().collect::<Vec<_>>(), [S(5), S(10), S(20)]);
    assert_eq!(s.max_total(), S(35));
}
