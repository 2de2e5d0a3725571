//! The XDP fast path: loads and attaches the embedded program, gives typed handles on its
//! pinned maps, and turns config, bans and counters into map contents and back.

mod addr;
mod attach;
mod bans;
pub mod bpffs;
mod clock;
mod deny_table;
mod detach;
mod errno;
mod error;
mod events;
mod maps;
mod pin_lock;
pub mod privileges;
mod program;
mod rules;
mod settings;
mod stats;
mod status;
mod upgrade;

pub use addr::{parse_target, target_key, AddrError};
pub use attach::{ActiveMode, Attachment};
pub use bans::{Ban, BanEntry, BanRequest, GuardedBan};
pub use clock::{Clock, SystemClock};
pub use deny_table::{decode_name, DenyTable, ListNames, Replaced, RuleKey, CONFIG_DENY_NAME};
pub use detach::{detach, uninstall_maps, Removed};
pub use error::FastpathError;
pub use events::{decode as decode_event, forward_program_log, log_events, DropStarted};
pub use maps::PinnedMaps;
pub use pin_lock::{PinLock, PinLockError};
pub use program::{
    apply_config, apply_config_with, apply_lists, apply_settings, layout_dir, load_program,
    Fastpath,
};
pub use settings::{coarse_tick_ns, port_words, shield_config, shield_config_with_tick};
pub use stats::{CounterRow, ListCounterRow, Stats};
pub use status::{InterfaceStatus, RuntimeStatus};
pub use upgrade::CarriedOver;
