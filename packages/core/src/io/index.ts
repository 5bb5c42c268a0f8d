// safetensors and config I/O (filled in by the io work).
export {};
