//! Microsoft Graph mail client and wire types.
