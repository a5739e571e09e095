//! What surrounds a test: the busy line and box, the 4G and Wi-Fi radio context, and
//! the interfaces `discover` proposes. Read-only: nothing here changes the box.

pub mod busy;
pub mod discover;
pub mod radio;
pub mod wifi;
