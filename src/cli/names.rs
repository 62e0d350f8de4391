use clap::Args;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct NamesArgs {
    /// Host whose EPMD to ask.
    #[arg(default_value = "127.0.0.1")]
    pub host: String,
    /// EPMD port.
    #[arg(long, env = "ERL_EPMD_PORT", default_value_t = 4369)]
    pub epmd_port: u16,
}

pub async fn run(a: NamesArgs) -> ExitCode {
    let client = crate::epmd::EpmdClient::new(a.host.clone(), a.epmd_port);
    match client.names().await {
        Ok(names) => {
            println!("epmd: up and running on port {} with data:", a.epmd_port);
            for (name, port) in names {
                println!("name {name} at port {port}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("erlnode names: {e}");
            ExitCode::FAILURE
        }
    }
}
