//! What a connection task sends next: the request kinds, their shares, a
//! cheap deterministic PRNG per task, and the task's own orders by state so
//! that every transition goes to an order that can take it. No I/O here.

use uuid::Uuid;

/// One kind of request of the mixed workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `POST /api/orders` → 201.
    Create,
    /// `PUT /api/orders/{id}/confirm` (PENDING → CONFIRMED) → 200.
    Confirm,
    /// `PUT /api/orders/{id}/prepare` (CONFIRMED → PREPARING) → 200.
    Prepare,
    /// `PUT /api/orders/{id}/ready` (PREPARING → READY) → 200.
    Ready,
    /// `PUT /api/orders/{id}/deliver` (READY → DELIVERED) → 200.
    Deliver,
    /// `PUT /api/orders/{id}/cancel` (PENDING → CANCELLED) → 200.
    Cancel,
    /// `GET /api/orders/{id}` → 200.
    Get,
    /// `GET /api/orders/customer/{customerId}` or
    /// `GET /api/orders?customerId=…` (read model) → 200.
    List,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Create,
        Kind::Confirm,
        Kind::Prepare,
        Kind::Ready,
        Kind::Deliver,
        Kind::Cancel,
        Kind::Get,
        Kind::List,
    ];
    /// The transitions that move an order forward, in lifecycle order.
    pub const FORWARD: [Kind; 4] = [Kind::Confirm, Kind::Prepare, Kind::Ready, Kind::Deliver];
    /// Every transition.
    pub const TRANSITIONS: [Kind; 5] = [
        Kind::Confirm,
        Kind::Prepare,
        Kind::Ready,
        Kind::Deliver,
        Kind::Cancel,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Create => "create",
            Kind::Confirm => "confirm",
            Kind::Prepare => "prepare",
            Kind::Ready => "ready",
            Kind::Deliver => "deliver",
            Kind::Cancel => "cancel",
            Kind::Get => "get by id",
            Kind::List => "customer list",
        }
    }

    /// Writes: a create or a transition.
    pub fn is_command(self) -> bool {
        !matches!(self, Kind::Get | Kind::List)
    }

    /// The status of success.
    pub fn ok_status(self) -> u16 {
        match self {
            Kind::Create => 201,
            _ => 200,
        }
    }

    /// The order state a transition starts from (index into the book).
    fn start_state(self) -> Option<usize> {
        match self {
            Kind::Confirm | Kind::Cancel => Some(PENDING),
            Kind::Prepare => Some(CONFIRMED),
            Kind::Ready => Some(PREPARING),
            Kind::Deliver => Some(READY),
            Kind::Create | Kind::Get | Kind::List => None,
        }
    }

    /// The state after a successful transition (None: final, or no state change).
    fn next_state(self) -> Option<usize> {
        match self {
            Kind::Confirm => Some(CONFIRMED),
            Kind::Prepare => Some(PREPARING),
            Kind::Ready => Some(READY),
            _ => None,
        }
    }

    /// The path segment of a transition.
    pub fn action(self) -> Option<&'static str> {
        match self {
            Kind::Confirm => Some("confirm"),
            Kind::Prepare => Some("prepare"),
            Kind::Ready => Some("ready"),
            Kind::Deliver => Some("deliver"),
            Kind::Cancel => Some("cancel"),
            Kind::Create | Kind::Get | Kind::List => None,
        }
    }
}

const PENDING: usize = 0;
const CONFIRMED: usize = 1;
const PREPARING: usize = 2;
const READY: usize = 3;

/// SplitMix64: tiny, fast, and good enough to pick requests.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0); the bias of the modulo is
    /// negligible for the small `n` used here.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// Shares of the request kinds, in percent (they add up to 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weights {
    pub creates: u32,
    /// Confirm, prepare, ready and deliver together.
    pub transitions: u32,
    pub cancels: u32,
    pub gets: u32,
    pub lists: u32,
}

impl Weights {
    /// The default mix: a quarter creates, ~45 % transitions (5 % of them
    /// cancels), 30 % reads (20 % by id, 10 % customer lists).
    pub const DEFAULT: Weights = Weights {
        creates: 25,
        transitions: 40,
        cancels: 5,
        gets: 20,
        lists: 10,
    };

    /// Only creates.
    pub const CREATES: Weights = Weights {
        creates: 100,
        transitions: 0,
        cancels: 0,
        gets: 0,
        lists: 0,
    };

    /// Only reads by id.
    pub const GETS: Weights = Weights {
        creates: 0,
        transitions: 0,
        cancels: 0,
        gets: 100,
        lists: 0,
    };

    fn total(&self) -> u64 {
        u64::from(self.creates)
            + u64::from(self.transitions)
            + u64::from(self.cancels)
            + u64::from(self.gets)
            + u64::from(self.lists)
    }

    /// Checks that the shares add up to 100.
    pub fn validate(&self) -> Result<(), String> {
        match self.total() {
            100 => Ok(()),
            t => Err(format!(
                "the --mix-* shares must add up to 100 (percent), they add up to {t}"
            )),
        }
    }

    /// Only the transitions of this mix (forward and cancels in the same
    /// proportion), for the transitions-only phase; all forward when the
    /// mix has none.
    pub fn transitions_only(&self) -> Weights {
        let (transitions, cancels) = match (self.transitions, self.cancels) {
            (0, 0) => (100, 0),
            (t, c) => {
                let cancels = (100 * c).div_ceil(t + c).min(100);
                (100 - cancels, cancels)
            }
        };
        Weights {
            creates: 0,
            transitions,
            cancels,
            gets: 0,
            lists: 0,
        }
    }
}

/// What to do when the picked kind has no order to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Create an order instead (the mix).
    Create,
    /// Try another transition, else stop (the phases on existing orders).
    Stop,
}

/// One task's orders: the ones that can still move, by state, and every
/// order it has created (for reads by id).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrderBook {
    /// PENDING, CONFIRMED, PREPARING, READY.
    open: [Vec<Uuid>; 4],
    all: Vec<Uuid>,
}

impl OrderBook {
    pub fn created(&mut self, id: Uuid) {
        self.open[PENDING].push(id);
        self.all.push(id);
    }

    /// Every order created by this task.
    pub fn all(&self) -> &[Uuid] {
        &self.all
    }

    /// How many orders wait in each state (PENDING, CONFIRMED, PREPARING, READY).
    pub fn open_counts(&self) -> [usize; 4] {
        [
            self.open[PENDING].len(),
            self.open[CONFIRMED].len(),
            self.open[PREPARING].len(),
            self.open[READY].len(),
        ]
    }

    fn has(&self, kind: Kind) -> bool {
        kind.start_state().is_some_and(|s| !self.open[s].is_empty())
    }

    /// Takes a random order that can take `kind` out of the book; it comes
    /// back with [`OrderBook::succeeded`] only when the transition succeeds
    /// (after a failure its state is unknown).
    fn take(&mut self, kind: Kind, rng: &mut Rng) -> Option<Uuid> {
        let list = &mut self.open[kind.start_state()?];
        if list.is_empty() {
            return None;
        }
        let i = rng.below(list.len() as u64) as usize;
        Some(list.swap_remove(i))
    }

    /// Records a successful transition of `id`.
    pub fn succeeded(&mut self, kind: Kind, id: Uuid) {
        if let Some(s) = kind.next_state() {
            self.open[s].push(id);
        }
    }

    fn any(&self, rng: &mut Rng) -> Option<Uuid> {
        if self.all.is_empty() {
            return None;
        }
        self.all
            .get(rng.below(self.all.len() as u64) as usize)
            .copied()
    }

    /// A forward transition that has an order, starting at a random one.
    fn take_forward(&mut self, rng: &mut Rng) -> Option<(Kind, Uuid)> {
        let first = rng.below(Kind::FORWARD.len() as u64) as usize;
        (0..Kind::FORWARD.len())
            .map(|k| Kind::FORWARD[(first + k) % Kind::FORWARD.len()])
            .find(|k| self.has(*k))
            .and_then(|k| Some((k, self.take(k, rng)?)))
    }
}

/// The next request: its kind and, except for creates and lists, the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    pub kind: Kind,
    pub order: Option<Uuid>,
}

/// Picks the next request by `weights`. A transition or read without a
/// suitable order falls back as `fallback` says; `None` means the task has
/// nothing left to do.
pub fn choose(
    weights: &Weights,
    rng: &mut Rng,
    book: &mut OrderBook,
    fallback: Fallback,
) -> Option<Pick> {
    let create = Pick {
        kind: Kind::Create,
        order: None,
    };
    let mut r = rng.below(weights.total().max(1));
    let mut within = |share: u32| {
        let hit = r < u64::from(share);
        r = r.saturating_sub(u64::from(share));
        hit
    };
    let picked = if within(weights.creates) {
        return Some(create);
    } else if within(weights.transitions) {
        book.take_forward(rng).map(|(kind, id)| (kind, Some(id)))
    } else if within(weights.cancels) {
        book.take(Kind::Cancel, rng)
            .map(|id| (Kind::Cancel, Some(id)))
    } else if within(weights.gets) {
        book.any(rng).map(|id| (Kind::Get, Some(id)))
    } else if weights.lists > 0 {
        Some((Kind::List, None))
    } else {
        None
    };
    match (picked, fallback) {
        (Some((kind, order)), _) => Some(Pick { kind, order }),
        (None, Fallback::Create) => Some(create),
        (None, Fallback::Stop) if weights.gets == 100 => None,
        (None, Fallback::Stop) => book.take_forward(rng).map(|(kind, id)| Pick {
            kind,
            order: Some(id),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u128) -> impl Iterator<Item = Uuid> {
        (1..=n).map(Uuid::from_u128)
    }

    #[test]
    fn the_prng_is_deterministic_per_seed_and_stays_below_the_bound() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let xs: Vec<u64> = (0..100).map(|_| a.below(10)).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.below(10)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|x| *x < 10));
        assert!((0..10).all(|v| xs.contains(&v)), "{xs:?}");
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
        assert_eq!(Rng::new(3).below(0), 0);
    }

    #[test]
    fn the_default_mix_adds_up_and_a_wrong_one_is_refused() {
        assert_eq!(Weights::DEFAULT.validate(), Ok(()));
        let wrong = Weights {
            creates: 50,
            ..Weights::DEFAULT
        };
        assert!(wrong.validate().is_err_and(|e| e.contains("125")));
    }

    #[test]
    fn the_picks_follow_the_shares_once_orders_exist() {
        let mut rng = Rng::new(42);
        let mut book = OrderBook::default();
        let mut counts = [0u32; 8];
        for i in 0..100_000u128 {
            let Some(p) = choose(&Weights::DEFAULT, &mut rng, &mut book, Fallback::Create) else {
                panic!("the mix never runs out");
            };
            counts[p.kind.index()] += 1;
            match (p.kind, p.order) {
                (Kind::Create, None) => book.created(Uuid::from_u128(i + 1)),
                (k, Some(id)) if k.action().is_some() => book.succeeded(k, id),
                (Kind::Get, Some(_)) | (Kind::List, None) => {}
                other => panic!("unexpected pick {other:?}"),
            }
        }
        let pct = |k: Kind| f64::from(counts[k.index()]) / 1000.0;
        let forward: f64 = Kind::FORWARD.iter().map(|k| pct(*k)).sum();
        // Transitions without a candidate fall back to creates; the lifecycle
        // leaves few such moments once the book fills.
        assert!((24.0..=28.0).contains(&pct(Kind::Create)), "{counts:?}");
        assert!((37.0..=41.0).contains(&forward), "{counts:?}");
        assert!((4.0..=6.0).contains(&pct(Kind::Cancel)), "{counts:?}");
        assert!((19.0..=21.0).contains(&pct(Kind::Get)), "{counts:?}");
        assert!((9.0..=11.0).contains(&pct(Kind::List)), "{counts:?}");
        for k in Kind::FORWARD {
            assert!(pct(k) > 5.0, "{k:?} {counts:?}");
        }
    }

    #[test]
    fn a_transition_only_goes_to_an_order_in_the_state_it_starts_from() {
        let mut rng = Rng::new(1);
        let mut book = OrderBook::default();
        let id = Uuid::from_u128(9);
        book.created(id);
        let w = Weights {
            creates: 0,
            transitions: 100,
            cancels: 0,
            gets: 0,
            lists: 0,
        };
        let mut path = Vec::new();
        while let Some(p) = choose(&w, &mut rng, &mut book, Fallback::Stop) {
            assert_eq!(p.order, Some(id));
            path.push(p.kind);
            book.succeeded(p.kind, id);
        }
        assert_eq!(path, Kind::FORWARD);
        assert_eq!(book.open_counts(), [0, 0, 0, 0]);
        assert_eq!(book.all(), [id]);
    }

    #[test]
    fn a_failed_transition_takes_the_order_out_of_the_book() {
        let mut rng = Rng::new(5);
        let mut book = OrderBook::default();
        ids(3).for_each(|id| book.created(id));
        let cancel = Weights {
            creates: 0,
            transitions: 0,
            cancels: 100,
            gets: 0,
            lists: 0,
        };
        let first = choose(&cancel, &mut rng, &mut book, Fallback::Stop);
        assert_eq!(first.map(|p| p.kind), Some(Kind::Cancel));
        assert_eq!(book.open_counts(), [2, 0, 0, 0]);
        assert_eq!(book.all().len(), 3);
    }

    #[test]
    fn without_a_candidate_the_mix_creates_and_a_phase_moves_on_or_stops() {
        let mut rng = Rng::new(3);
        let mut empty = OrderBook::default();
        let w = Weights {
            creates: 0,
            transitions: 50,
            cancels: 0,
            gets: 50,
            lists: 0,
        };
        let p = choose(&w, &mut rng, &mut empty, Fallback::Create);
        assert_eq!(p.map(|p| p.kind), Some(Kind::Create));
        assert_eq!(choose(&w, &mut rng, &mut empty, Fallback::Stop), None);
        assert_eq!(
            choose(&Weights::GETS, &mut rng, &mut empty, Fallback::Stop),
            None
        );

        // A cancel with no PENDING order moves a CONFIRMED one on instead.
        let mut book = OrderBook::default();
        book.created(Uuid::from_u128(1));
        book.open[PENDING].clear();
        book.open[CONFIRMED].push(Uuid::from_u128(1));
        let cancels = Weights {
            creates: 0,
            transitions: 0,
            cancels: 100,
            gets: 0,
            lists: 0,
        };
        let p = choose(&cancels, &mut rng, &mut book, Fallback::Stop);
        assert_eq!(p.map(|p| p.kind), Some(Kind::Prepare));
    }

    #[test]
    fn reads_by_id_pick_any_order_of_the_task_and_leave_the_book_alone() {
        let mut rng = Rng::new(11);
        let mut book = OrderBook::default();
        ids(4).for_each(|id| book.created(id));
        for _ in 0..50 {
            let p = choose(&Weights::GETS, &mut rng, &mut book, Fallback::Stop);
            assert!(p.is_some_and(
                |p| p.kind == Kind::Get && p.order.is_some_and(|id| book.all().contains(&id))
            ));
        }
        assert_eq!(book.open_counts(), [4, 0, 0, 0]);
    }

    #[test]
    fn the_transitions_only_phase_keeps_the_cancel_share_of_the_mix() {
        let t = Weights::DEFAULT.transitions_only();
        assert_eq!((t.transitions, t.cancels), (88, 12));
        assert_eq!(t.validate(), Ok(()));
        let none = Weights::GETS.transitions_only();
        assert_eq!((none.transitions, none.cancels), (100, 0));
    }
}
