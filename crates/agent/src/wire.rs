//! placeholder, replaced by the merge
