//! Rule model, validation and evaluation (pure domain, no I/O).
