//! Reading client SQL text without parsing it.
//!
//! - [`words`]: which of a few words start a word somewhere in a text, found
//!   eight bytes at a time.

pub mod words;
