//! What a sweep and a reap pass share: the policy table that decides an
//! entry's fate once its risk is known ([`policy`]), the cheap facts about
//! an entry ([`inspect`]), the report both write ([`report`]), and the drain
//! of a root's trash with the side effects of reclaiming ([`drain`]).
//! `crate::sweep` and `crate::reap` each add their own first decision and
//! their own walk over a root; neither imports the other.

pub mod drain;
pub mod inspect;
pub mod policy;
pub mod report;
