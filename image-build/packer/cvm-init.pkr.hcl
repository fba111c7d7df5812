# Packer: a Debian 12 cloud image with cvm-init installed and its initramfs
# regenerated, by the same provision.sh the tests run.
#
#   cargo deb
#   packer init image-build/packer
#   packer build -var deb=target/debian/cvm-init_0.1.0-1_amd64.deb \
#       -var config_dir=/path/to/your/cvm-init-config \
#       -var build_password="$(openssl rand -hex 16)" image-build/packer
#
# config_dir holds config.toml (+ the broker CA it pins). With mode=initrd
# (default) the Debian cloud image's initramfs-tools hook puts cvm-init into
# the initramfs: volume mountpoints must be below /root there (see
# docs/config.example.toml). Not built in this repository's CI (no Packer,
# no KVM): written against the QEMU plugin's documented options.

packer {
  required_plugins {
    qemu = {
      source  = "github.com/hashicorp/qemu"
      version = ">= 1.1.0"
    }
  }
}

variable "deb" {
  type        = string
  description = "Path to the cvm-init .deb built with cargo deb."
}

variable "config_dir" {
  type        = string
  description = "Directory with config.toml and the files it references."
}

variable "mode" {
  type        = string
  default     = "initrd"
  description = "initrd: cvm-init in the initramfs; booted: cvm-init-secrets.service after switch-root."
  validation {
    condition     = contains(["initrd", "booted"], var.mode)
    error_message = "The mode must be initrd or booted."
  }
}

variable "base_image_url" {
  type    = string
  default = "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2"
}

variable "base_image_checksum" {
  type    = string
  default = "file:https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS"
}

# Only for the build VM's temporary user, which is removed before the image
# is captured (see the last provisioner).
variable "build_password" {
  type      = string
  sensitive = true
}

source "qemu" "debian" {
  iso_url      = var.base_image_url
  iso_checksum = var.base_image_checksum
  disk_image   = true
  disk_size    = "4G"
  format       = "qcow2"
  accelerator  = "kvm"
  headless     = true
  memory       = 2048
  cpus         = 2

  # The build VM is configured through the NoCloud seed; the resulting image
  # keeps cloud-init for its own instances (see ../cloud-init/).
  cd_label = "cidata"
  cd_content = {
    "meta-data" = "instance-id: cvm-init-packer-build\n"
    "user-data" = <<-EOT
      #cloud-config
      users:
        - name: packer
          sudo: "ALL=(ALL) NOPASSWD:ALL"
          shell: /bin/bash
          lock_passwd: false
          plain_text_passwd: "${var.build_password}"
      ssh_pwauth: true
    EOT
  }

  communicator     = "ssh"
  ssh_username     = "packer"
  ssh_password     = var.build_password
  ssh_timeout      = "15m"
  shutdown_command = "sudo shutdown -P now"

  output_directory = "output-cvm-init"
  vm_name          = "cvm-init-debian12.qcow2"
}

build {
  sources = ["source.qemu.debian"]

  provisioner "shell" {
    inline = ["cloud-init status --wait >/dev/null || true", "mkdir -p /tmp/cvm-init-config"]
  }

  provisioner "file" {
    source      = var.deb
    destination = "/tmp/cvm-init.deb"
  }

  # A trailing slash uploads the directory's contents.
  provisioner "file" {
    source      = "${var.config_dir}/"
    destination = "/tmp/cvm-init-config"
  }

  provisioner "shell" {
    script          = "${path.root}/provision.sh"
    execute_command = "chmod +x {{ .Path }}; sudo {{ .Vars }} {{ .Path }} /tmp/cvm-init.deb /tmp/cvm-init-config ${var.mode}"
  }

  # Leave no build credentials and no per-instance state in the image: the
  # next boot is a fresh cloud-init instance.
  provisioner "shell" {
    inline = [
      "sudo rm -rf /tmp/cvm-init.deb /tmp/cvm-init-config",
      "sudo cloud-init clean --logs --seed",
      "sudo rm -f /etc/sudoers.d/90-cloud-init-users",
      "sudo userdel --remove --force packer || true",
    ]
    expect_disconnect = true
  }
}
