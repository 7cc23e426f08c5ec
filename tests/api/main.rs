mod accounts;
mod catalog;
mod faults;
mod helpers;
mod outage;
mod resilience;
mod sandbox_attacks;
mod submissions;
