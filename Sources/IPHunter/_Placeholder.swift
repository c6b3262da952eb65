/// Placeholder until the IP hunter lands.
enum IPHunterPlaceholder {}
